from etl.textnorm import clean_text, match_key, match_keys, match_units, numbers_in, numbers_of


def test_key_folds_width_case_space_punctuation_and_script():
    assert match_key("ＡＢＣ　１２３，Hello World!") == match_key("abc123hello world")
    assert match_key("頭暈想吐，怎麼辦？") == match_key("头晕想吐怎么办")
    assert match_key("  胸闷、气短。 ") == "胸闷气短"


def test_key_keeps_digits_units_and_decimal_points():
    assert match_key("阿司匹林100mg") != match_key("阿司匹林300mg")
    assert match_key("空腹血糖7.8mmol/L") != match_key("空腹血糖78mmol/L")
    assert match_key("每次1-2片") != match_key("每次12片")
    assert "100mg" in match_key("阿司匹林 100 mg")
    assert match_key("5%葡萄糖").startswith("5%")


def test_numbers_are_compared_as_a_sorted_multiset():
    assert numbers_in(match_key("血压120/80，心率72")) == numbers_in(match_key("心率72，血压120/80"))
    assert numbers_in(match_key("血糖7.8")) != numbers_in(match_key("血糖6.1"))


def test_keys_in_batch_match_single_keys():
    texts = ["頭暈", "", "!!!", "Rash."]
    assert match_keys(texts).to_list() == [match_key(t) for t in texts] == ["头晕", "", "", "rash"]


def test_units_split_han_characters_and_words():
    assert match_units("最近 Insomnia 很嚴重, 血糖7.8mmol") == ["最", "近", "insomnia", "很", "严", "重",
                                                             "血", "糖", "7.8", "mmol"]


def test_clean_text_only_touches_controls_entities_and_ends():
    assert clean_text("  a&nbsp;b &amp; c\x00\x07 &unknown;\ufeff ") == "a\xa0b & c &unknown;"
    assert clean_text("第一行\n第二行\t结束") == "第一行\n第二行\t结束"


def test_numbers_keep_their_units():
    swapped = ("糖化血红蛋白12.4%，空腹血糖9.7mmol/L", "糖化血红蛋白9.7%，空腹血糖12.4mmol/L")
    assert numbers_in(match_key(swapped[0])) != numbers_in(match_key(swapped[1]))
    assert numbers_of([match_key(t) for t in swapped]) == ["|".join(numbers_in(match_key(t))) for t in swapped]
