"""Fetchers, one module per host, behind the `Fetcher` interface of `etl.fetch.base`."""
