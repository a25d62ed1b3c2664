"""Subcommands: every module here exposes `register(subparsers)`."""
