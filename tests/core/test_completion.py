"""The completion check's rule: a drafted call is kept only when it adds a task to the answer."""

import pytest

from asynclm.core.cml import parse_call
from asynclm.core.completion import adds_task, value_words

REQUEST = "What's in yithaix, calculate 806/0 and cat brari.txt."
MADE = [parse_call("list_dir(path='yithaix')"), parse_call("read_file(path='brari.txt')")]


def test_words_are_numbers_and_words_of_three_letters_or_more_but_function_words():
    assert value_words("Rio Branco at 05:55, 28% of 850 km in MiB") == {
        "rio", "branco", "05", "55", "28", "850", "mib"}
    assert value_words("how many lines does the file have") == {"lines", "file"}


@pytest.mark.parametrize("draft, kept", [
    ("calculator(expression='806/0')", True),  # the task the model left out
    ("list_dir(path='yithaix')", False),  # a call the answer has written
    ("read_file(path='yithaix/brari.txt')", False),  # a new call, but from words already used
    ("file_info(path='brari.txt')", False),  # a sibling on a value already used
    ("calculator(expression='12*34')", False),  # words the user never wrote
    ("list_dir(path='cat')", True),  # "cat" is a word of the request no call holds: a verb is a name to it
])
def test_a_draft_is_kept_only_when_it_holds_a_word_of_the_request_no_call_holds(draft, kept):
    assert adds_task(parse_call(draft), MADE, REQUEST) is kept


def test_a_dependent_call_is_kept_when_it_takes_a_result_nothing_takes_yet():
    made = [parse_call("calculator(expression='3*4')")]
    request = "what is 3*4 in km as miles"
    assert adds_task(parse_call("convert_units(value=c1, from_unit='km', to_unit='miles')"), made, request)
    made.append(parse_call("convert_units(value=c1, from_unit='km', to_unit='miles')"))
    assert not adds_task(parse_call("convert_units(value=c1, from_unit='km', to_unit='miles')"), made, request)
    assert not adds_task(parse_call("convert_units(value=c1, from_unit='miles', to_unit='km')"), made, request)


def test_a_mid_answer_message_counts_as_asked():
    made = MADE + [parse_call("calculator(expression='806/0')")]
    assert not adds_task(parse_call("current_time(timezone='Oslo')"), made, REQUEST)
    assert adds_task(parse_call("current_time(timezone='Oslo')"), made, REQUEST + "\nand the time in Oslo")


def test_the_first_call_of_an_answer_needs_a_word_of_the_request_too():
    assert adds_task(parse_call("current_time(timezone='Oslo')"), [], "the time in Oslo")
    assert not adds_task(parse_call("current_time(timezone='Lima')"), [], "the time in Oslo")
