"""The completion check's rule: a drafted call is kept only when it adds a task to the answer."""

import pytest

from asynclm.core.cml import parse_call
from asynclm.core.completion import adds_task, likely_enough, open_words, value_words

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
    ("list_dir(path='cat')", False),  # a word no call holds, but of "cat brari.txt", a task done
])
def test_a_draft_is_kept_only_when_it_holds_a_word_of_the_request_no_call_holds(draft, kept):
    assert adds_task(parse_call(draft), MADE, [(REQUEST, 0)]) is kept


def test_a_dependent_call_is_kept_when_it_takes_a_result_nothing_takes_yet():
    made = [parse_call("calculator(expression='3*4')")]
    asked = [("what is 3*4 in km as miles", 0)]
    assert adds_task(parse_call("convert_units(value=c1, from_unit='km', to_unit='miles')"), made, asked)
    made.append(parse_call("convert_units(value=c1, from_unit='km', to_unit='miles')"))
    assert not adds_task(parse_call("convert_units(value=c1, from_unit='km', to_unit='miles')"), made, asked)
    assert not adds_task(parse_call("convert_units(value=c1, from_unit='miles', to_unit='km')"), made, asked)


def test_a_message_typed_mid_answer_asks_for_more_even_about_a_task_done():
    made = MADE + [parse_call("calculator(expression='806/0')")]
    oslo = parse_call("current_time(timezone='Oslo')")
    assert not adds_task(oslo, made, [(REQUEST, 0)])
    assert adds_task(oslo, made, [(REQUEST, 0), ("and the time in Oslo", 3)])
    made = [parse_call("current_time(timezone='Manila')")]
    asked = [("current time in Manila", 0), ("sorry, Urumqi instead of Manila", 1)]
    assert adds_task(parse_call("current_time(timezone='Urumqi')"), made, asked)
    assert not adds_task(parse_call("current_time(timezone='Urumqi')"), made, [asked[0]])
    made.append(parse_call("current_time(timezone='Urumqi')"))
    assert not adds_task(parse_call("list_dir(path='instead')"), made, asked), "the message's task is done"


def test_the_first_call_of_an_answer_needs_a_word_of_the_request_too():
    assert adds_task(parse_call("current_time(timezone='Oslo')"), [], [("the time in Oslo", 0)])
    assert not adds_task(parse_call("current_time(timezone='Lima')"), [], [("the time in Oslo", 0)])


def test_the_other_words_of_a_task_done_are_no_new_task():
    request = "set a timer for 2 seconds and what is 31*29"
    made = [parse_call("wait(seconds=2)"), parse_call("calculator(expression='31*29')")]
    assert not adds_task(parse_call("search_files(pattern='set')"), made, [(request, 0)])
    assert adds_task(parse_call("search_files(pattern='set')"), made[1:],
                     [(request.replace("2 seconds", "a bit"), 0)])
    listing = [parse_call("list_dir(path='meapeas')"),
               parse_call("convert_units(value=988, from_unit='MB', to_unit='KiB')")]
    assert open_words([("quick one: search for zopox, show the files in meapeas and how many KiB is 988 MB", 0)],
                      listing) == {"quick", "one", "search", "zopox"}
    assert open_words([("convert 05:55 from Guatemala to Wallis time. Also list nax/shopizi.txt", 0)],
                      [parse_call("list_dir(path='nax/shopizi.txt')")]) == {
        "convert", "05", "55", "guatemala", "wallis", "time"}


@pytest.mark.parametrize("logprob, named, written", [
    (-1.9, -1.5, True),  # likely enough as a whole
    (-2.9, -2.8, True),  # an unsure tool, a sure call: name -2.8, arguments -0.1
    (-3.1, -2.9, True),  # arguments -0.2
    (-2.6, -2.0, False),  # arguments -0.6: neither
    (-3.2, -3.1, False),  # name below -3
])
def test_another_tools_call_is_written_when_likely_or_when_only_its_tool_was_in_doubt(logprob, named, written):
    assert likely_enough(logprob, named) is written
