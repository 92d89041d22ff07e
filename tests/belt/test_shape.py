"""Tests for app.belt.shape: tables of inputs per shape, nesting, a random fuzz, adapters."""

from __future__ import annotations

import dataclasses
import doctest
import json
import math
import random
from typing import Any

import pytest

from app.belt import shape as shape_module
from app.belt.shape import (
    Issues,
    Parsed,
    Shape,
    adapt,
    boolean,
    choice,
    integer,
    items,
    obj,
    optional,
    text,
)

OK = object()  # marker: "expect this value, no issues"


def check(shape: Shape[Any], data: Any, expected: Any) -> None:
    """``expected`` is a value (must parse ok) or ``Issues`` (must fail with exactly those)."""
    got = shape.parse(data)
    if isinstance(expected, Issues):
        assert not got.ok
        assert got.value is None
        assert got.issues == expected
    else:
        assert got.ok, got.issues
        assert got.issues == {}
        assert got.value == expected
        assert type(got.value) is type(expected)


def whole(message: str) -> Issues:
    return Issues({"": message})


TITLE = text(min=1, max=200, label="Title")


@pytest.mark.parametrize(
    ("shape", "data", "expected"),
    [
        pytest.param(TITLE, "Milk", "Milk", id="plain"),
        pytest.param(TITLE, "  Milk \n", "Milk", id="trimmed"),
        pytest.param(text(trim=False), "  Milk ", "  Milk ", id="no-trim"),
        pytest.param(TITLE, "", whole("Title can't be blank."), id="blank"),
        pytest.param(TITLE, " \t\n ", whole("Title can't be blank."), id="whitespace-only"),
        pytest.param(text(), "   ", "", id="whitespace-only-allowed-when-min-0"),
        pytest.param(TITLE, "a" * 200, "a" * 200, id="200-chars"),
        pytest.param(
            TITLE,
            "a" * 201,
            whole("Title must be at most 200 characters (got 201)."),
            id="201-chars",
        ),
        pytest.param(TITLE, " " + "a" * 200 + " ", "a" * 200, id="200-after-trim"),
        pytest.param(TITLE, "é" * 200, "é" * 200, id="unicode-counts-characters"),
        pytest.param(TITLE, "🥛" * 200, "🥛" * 200, id="emoji-counts-one-each"),
        pytest.param(text(max=3), "日本語", "日本語", id="cjk"),
        pytest.param(
            text(max=1),
            "ab",
            whole("Value must be at most 1 character (got 2)."),
            id="singular",
        ),
        pytest.param(
            text(min=3, label="Code"),
            "ab",
            whole("Code must be at least 3 characters (got 2)."),
            id="too-short",
        ),
        pytest.param(
            TITLE,
            "a\x00b",
            whole(
                "Title contains a control character ('\\x00' at character 2); "
                "remove it (only tabs and line breaks are allowed)."
            ),
            id="NUL",
        ),
        pytest.param(
            TITLE,
            "a\x1fb",
            whole(
                "Title contains a control character ('\\x1f' at character 2); "
                "remove it (only tabs and line breaks are allowed)."
            ),
            id="unit-separator",
        ),
        pytest.param(
            TITLE,
            "\x1f",
            whole(
                "Title contains a control character ('\\x1f' at character 1); "
                "remove it (only tabs and line breaks are allowed)."
            ),
            id="control-that-strip-would-eat",
        ),
        pytest.param(
            TITLE,
            "a\ud800",
            whole(
                "Title contains an unpaired surrogate ('\\ud800' at character 2); "
                "remove it (only tabs and line breaks are allowed)."
            ),
            id="lone-surrogate",
        ),
        pytest.param(TITLE, "a\tb\nc", "a\tb\nc", id="tab-and-newline-kept"),
        pytest.param(TITLE, "a\r\nb\rc", "a\nb\nc", id="form-CRLF-normalised"),
        pytest.param(TITLE, 12, whole("Title must be text (got 12)."), id="int"),
        pytest.param(TITLE, True, whole("Title must be text (got True)."), id="bool"),
        pytest.param(TITLE, 1.5, whole("Title must be text (got 1.5)."), id="float"),
        pytest.param(TITLE, ["a"], whole("Title must be text (got a list)."), id="list"),
        pytest.param(TITLE, {}, whole("Title must be text (got an object)."), id="dict"),
        pytest.param(TITLE, None, whole("Title is required."), id="None"),
        pytest.param(
            text(pattern=r"[a-z]+", label="Slug"),
            " abc ",
            "abc",
            id="pattern-after-trim",
        ),
        pytest.param(
            text(pattern=r"[a-z]+", label="Slug"),
            "abc1",
            whole("Slug is not in the expected format."),
            id="pattern-is-fullmatch",
        ),
        pytest.param(
            text(pattern=r"[a-z]+", pattern_message="Use lowercase letters only."),
            "ABC",
            whole("Use lowercase letters only."),
            id="pattern-message",
        ),
    ],
)
def test_text(shape: Shape[str], data: Any, expected: Any) -> None:
    check(shape, data, expected)


def test_text_shows_long_values_shortened() -> None:
    message = text(max=1).parse(123456789 * 10**60).issues[""]
    assert message.startswith("Value must be text (got 123456789")
    assert message.endswith("…).")
    assert len(message) < 80


COUNT = integer(min=1, max=10, label="Count")


@pytest.mark.parametrize(
    ("shape", "data", "expected"),
    [
        pytest.param(COUNT, 3, 3, id="int"),
        pytest.param(COUNT, "3", 3, id="form-string"),
        pytest.param(COUNT, " +7 ", 7, id="form-string-sign-and-spaces"),
        pytest.param(COUNT, "010", 10, id="leading-zero"),
        pytest.param(integer(), "-5", -5, id="negative"),
        pytest.param(COUNT, 4.0, 4, id="whole-float"),
        pytest.param(COUNT, 0, whole("Count must be at least 1 (got 0)."), id="below-min"),
        pytest.param(COUNT, "11", whole("Count must be at most 10 (got 11)."), id="above-max"),
        pytest.param(
            COUNT,
            "abc",
            whole("Count must be a whole number (got 'abc')."),
            id="letters",
        ),
        pytest.param(
            COUNT,
            "1.5",
            whole("Count must be a whole number (got '1.5')."),
            id="decimal-string",
        ),
        pytest.param(COUNT, 1.5, whole("Count must be a whole number (got 1.5)."), id="fraction"),
        pytest.param(COUNT, math.nan, whole("Count must be a whole number (got nan)."), id="NaN"),
        pytest.param(COUNT, math.inf, whole("Count must be a whole number (got inf)."), id="inf"),
        pytest.param(COUNT, True, whole("Count must be a whole number (got True)."), id="bool"),
        pytest.param(
            COUNT,
            "1_000",
            whole("Count must be a whole number (got '1_000')."),
            id="underscores",
        ),
        pytest.param(
            COUNT,
            "١٢",
            whole("Count must be a whole number (got '١٢')."),
            id="non-ascii-digits",
        ),
        pytest.param(COUNT, "", whole("Count is required."), id="blank"),
        pytest.param(COUNT, "  ", whole("Count is required."), id="whitespace-only"),
        pytest.param(COUNT, None, whole("Count is required."), id="None"),
        pytest.param(COUNT, [1], whole("Count must be a whole number (got a list)."), id="list"),
        pytest.param(
            COUNT,
            "9" * 31,
            whole("Count must be a whole number of at most 30 digits (got 31 characters)."),
            id="huge-string",
        ),
        pytest.param(
            integer(),
            2**63,
            whole("Value must be at most 9223372036854775807 (got 9223372036854775808)."),
            id="beyond-sqlite-int64",
        ),
        pytest.param(integer(), -(2**63), -(2**63), id="int64-min"),
        pytest.param(
            integer(),
            1e300,
            whole("Value must be at most 9223372036854775807 (got 1e+300)."),
            id="huge-float",
        ),
    ],
)
def test_integer(shape: Shape[int], data: Any, expected: Any) -> None:
    check(shape, data, expected)


DONE = boolean(label="Done")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(True, True, id="True"),
        pytest.param(False, False, id="False"),
        pytest.param("on", True, id="checkbox-on"),
        pytest.param("true", True, id="true"),
        pytest.param("1", True, id="one"),
        pytest.param("TRUE", True, id="any-case"),
        pytest.param("false", False, id="false"),
        pytest.param("0", False, id="zero"),
        pytest.param("", False, id="empty"),
        pytest.param("yes", whole("Done must be true or false (got 'yes')."), id="yes"),
        pytest.param(1, whole("Done must be true or false (got 1)."), id="int"),
        pytest.param(None, whole("Done must be true or false (got None)."), id="None"),
        pytest.param([], whole("Done must be true or false (got a list)."), id="list"),
    ],
)
def test_boolean(data: Any, expected: Any) -> None:
    check(DONE, data, expected)


STATUS = choice("open", "done", label="Status")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param("open", "open", id="first"),
        pytest.param("done", "done", id="second"),
        pytest.param("x", whole("Status must be one of 'open', 'done' (got 'x')."), id="unknown"),
        pytest.param(
            "Open",
            whole("Status must be one of 'open', 'done' (got 'Open'). Did you mean 'open'?"),
            id="did-you-mean",
        ),
        pytest.param(
            " open",
            whole("Status must be one of 'open', 'done' (got ' open'). Did you mean 'open'?"),
            id="exact",
        ),
        pytest.param(1, whole("Status must be one of 'open', 'done' (got 1)."), id="int"),
        pytest.param("", whole("Status is required."), id="blank"),
        pytest.param(None, whole("Status is required."), id="None"),
        pytest.param(
            ["open"],
            whole("Status must be one of 'open', 'done' (got a list)."),
            id="list",
        ),
    ],
)
def test_choice(data: Any, expected: Any) -> None:
    check(STATUS, data, expected)


@pytest.mark.parametrize(
    ("shape", "data", "expected"),
    [
        pytest.param(optional(integer()), None, None, id="None"),
        pytest.param(optional(integer()), "", None, id="blank-form-field"),
        pytest.param(optional(integer(), default=5), " ", 5, id="default"),
        pytest.param(optional(integer()), "7", 7, id="present"),
        pytest.param(
            optional(integer(label="Age")),
            "x",
            whole("Age must be a whole number (got 'x')."),
            id="present-but-wrong",
        ),
        pytest.param(optional(text(min=1)), "hi", "hi", id="text"),
    ],
)
def test_optional(shape: Shape[Any], data: Any, expected: Any) -> None:
    check(shape, data, expected)


def test_optional_default_is_not_shared() -> None:
    tags = optional(items(text()), default=[])
    first = tags.parse(None).value
    assert first == []
    first.append("mutated")
    assert tags.parse(None).value == []


TODO = obj(
    title=text(min=1, max=200),
    count=integer(min=1),
    done=boolean(),
    status=choice("open", "done"),
    note=optional(text(max=10)),
    due_date=optional(integer()),
    assigneeID=optional(text()),
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {"title": " Milk ", "count": "2", "done": "on", "status": "open"},
            {
                "title": "Milk",
                "count": 2,
                "done": True,
                "status": "open",
                "note": None,
                "due_date": None,
                "assigneeID": None,
            },
            id="form-strings",
        ),
        pytest.param(
            {"title": "Milk", "count": 2, "status": "done", "note": "x", "other": [1]},
            {
                "title": "Milk",
                "count": 2,
                "done": False,
                "status": "done",
                "note": "x",
                "due_date": None,
                "assigneeID": None,
            },
            id="unchecked-checkbox-and-unknown-keys",
        ),
        pytest.param(
            {},
            Issues(
                {
                    "title": "Title is required.",
                    "count": "Count is required.",
                    "status": "Status is required.",
                }
            ),
            id="missing-required",
        ),
        pytest.param(
            {
                "title": "",
                "count": "0",
                "status": "x",
                "note": "a" * 11,
                "due_date": "z",
                "assigneeID": 3,
            },
            Issues(
                {
                    "title": "Title can't be blank.",
                    "count": "Count must be at least 1 (got 0).",
                    "status": "Status must be one of 'open', 'done' (got 'x').",
                    "note": "Note must be at most 10 characters (got 11).",
                    "due_date": "Due date must be a whole number (got 'z').",
                    "assigneeID": "Assignee ID must be text (got 3).",
                }
            ),
            id="every-field-wrong-labels-humanised",
        ),
        pytest.param([1, 2], whole("Expected an object of fields (got a list)."), id="list"),
        pytest.param("x", whole("Expected an object of fields (got a string)."), id="string"),
        pytest.param(None, whole("Expected an object of fields (got None)."), id="None"),
    ],
)
def test_obj(data: Any, expected: Any) -> None:
    check(TODO, data, expected)


ORDER = obj(
    customer=obj(name=text(min=1), email=text(pattern=r"[^@\s]+@[^@\s]+")),
    items=items(obj(name=text(min=1), qty=integer(min=1)), min=1, max=3),
    tags=items(text(max=5)),
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {
                "customer": {"name": "Ada", "email": "ada@example.com"},
                "items": [{"name": "Tea", "qty": "2"}],
                "tags": ["a", "b"],
            },
            {
                "customer": {"name": "Ada", "email": "ada@example.com"},
                "items": [{"name": "Tea", "qty": 2}],
                "tags": ["a", "b"],
            },
            id="valid",
        ),
        pytest.param(
            {
                "customer": {"name": "", "email": "nope"},
                "items": [{"name": "a", "qty": 1}, {"name": "b", "qty": 1}, {"qty": 0}],
                "tags": ["ok", "toolong"],
            },
            Issues(
                {
                    "customer.name": "Name can't be blank.",
                    "customer.email": "Email is not in the expected format.",
                    "items.2.name": "Name is required.",
                    "items.2.qty": "Qty must be at least 1 (got 0).",
                    "tags.1": "Tags item 2 must be at most 5 characters (got 7).",
                }
            ),
            id="nested-paths",
        ),
        pytest.param(
            {"customer": [], "items": [], "tags": "a"},
            Issues(
                {
                    "customer": "Customer must be an object of fields (got a list).",
                    "items": "Items must have at least 1 item (got 0).",
                    "tags": "Tags must be a list (got 'a').",
                }
            ),
            id="wrong-containers-and-min-items",
        ),
        pytest.param(
            {"customer": None, "items": [{"name": "a", "qty": 1}] * 4},
            Issues(
                {
                    "customer": "Customer is required.",
                    "items": "Items must have at most 3 items (got 4).",
                }
            ),
            id="null-object-and-max-items",
        ),
        pytest.param(
            {"customer": {"name": "A", "email": "a@b"}, "items": ["x"]},
            Issues({"items.0": "Items item 1 must be an object of fields (got a string)."}),
            id="list-element-not-an-object",
        ),
        pytest.param(
            {
                "customer": {"name": "A", "email": "a@b"},
                "items": [{"name": "a", "qty": 1}],
                "tags": None,
            },
            {
                "customer": {"name": "A", "email": "a@b"},
                "items": [{"name": "a", "qty": 1}],
                "tags": [],
            },
            id="null-list-is-empty",
        ),
    ],
)
def test_nested(data: Any, expected: Any) -> None:
    check(ORDER, data, expected)


@pytest.mark.parametrize(
    ("shape", "data", "expected"),
    [
        pytest.param(items(integer()), ["1", 2, 3.0], [1, 2, 3], id="form-strings"),
        pytest.param(items(integer()), (1, 2), [1, 2], id="tuple"),
        pytest.param(items(integer(), max=2), [1, 2], [1, 2], id="at-max"),
        pytest.param(
            items(integer(), max=2),
            [1, 2, 3],
            whole("Value must have at most 2 items (got 3)."),
            id="over-max",
        ),
        pytest.param(
            items(integer(), min=1, label="Scores"),
            [],
            whole("Scores must have at least 1 item (got 0)."),
            id="under-min",
        ),
        pytest.param(
            items(integer(), min=3),
            ["x"],
            Issues(
                {
                    "": "Value must have at least 3 items (got 1).",
                    "0": "Item 1 must be a whole number (got 'x').",
                }
            ),
            id="under-min-also-checks-elements",
        ),
        pytest.param(
            items(integer(label="Score")),
            [1, "x"],
            Issues({"1": "Score must be a whole number (got 'x')."}),
            id="element-label-wins",
        ),
        pytest.param(
            items(text()),
            "abc",
            whole("Value must be a list (got 'abc')."),
            id="string-is-not-a-list",
        ),
        pytest.param(
            items(text()),
            {"0": "a"},
            whole("Value must be a list (got an object)."),
            id="dict",
        ),
    ],
)
def test_items(shape: Shape[Any], data: Any, expected: Any) -> None:
    check(shape, data, expected)


def test_obj_reads_a_werkzeug_multidict() -> None:
    from werkzeug.datastructures import ImmutableMultiDict

    form = ImmutableMultiDict([("title", "Milk"), ("tags", "a"), ("tags", "b")])
    parsed = obj(title=text(), tags=items(text()), done=boolean()).parse(form)
    assert parsed.value == {"title": "Milk", "tags": ["a", "b"], "done": False}
    maybe = obj(tags=optional(items(text()))).parse(form)
    assert maybe.value == {"tags": ["a", "b"]}


def test_missing_list_is_empty() -> None:
    assert obj(tags=items(text())).parse({}).value == {"tags": []}
    assert obj(tags=items(text(), min=1)).parse({}).issues == {"tags": "Tags must have at least 1 item (got 0)."}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(
            lambda: text(min=-1),
            "text(min=-1): min can't be negative; use min=0.",
            id="text-negative",
        ),
        pytest.param(
            lambda: text(min=5, max=2),
            "text(min=5, max=2): max is below min; swap them.",
            id="text-max-below-min",
        ),
        pytest.param(
            lambda: integer(min=5, max=2),
            "integer(min=5, max=2): max is below min; swap them.",
            id="integer-max-below-min",
        ),
        pytest.param(
            lambda: items(text(), min=-2),
            "items(min=-2): min can't be negative; use min=0.",
            id="items-negative",
        ),
        pytest.param(
            lambda: text(pattern="("),
            "text(pattern='(') is not a valid regular expression",
            id="bad-pattern",
        ),
        pytest.param(lambda: choice(), "choice() needs at least one value", id="empty-choice"),
        pytest.param(
            lambda: choice("a", "a"),
            "choice() values must be distinct; got ('a', 'a').",
            id="duplicate-choice",
        ),
    ],
)
def test_bad_definitions_raise_naming_the_value(make: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value).startswith(message)


def test_choice_values_must_be_strings() -> None:
    with pytest.raises(TypeError, match=r"got 1\. Forms send strings"):
        choice("a", 1)  # type: ignore[arg-type]


def test_integer_allows_negative_min() -> None:
    assert integer(min=-5).parse("-5").value == -5


def test_shapes_are_immutable() -> None:
    for shape in (TITLE, COUNT, DONE, STATUS, TODO, ORDER, optional(text())):
        field = dataclasses.fields(shape)[0].name  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(shape, field, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Parsed(1, Issues()).value = 2  # type: ignore[misc]


def test_parsed_ok() -> None:
    assert Parsed(None, Issues()).ok
    assert not Parsed(None, Issues({"": "Bad."})).ok


# --- fuzz -----------------------------------------------------------------------------

_CHARS = "aZ09 _-.@\t\n\r\x00\x1f\x7féü日🥛\ud800'\"\\"
_WORDS = [
    "title",
    "count",
    "done",
    "status",
    "note",
    "due_date",
    "items",
    "name",
    "qty",
    "tags",
    "customer",
    "email",
]


def _random_string(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.3:
        return rng.choice(
            [
                "",
                " ",
                "on",
                "true",
                "false",
                "0",
                "1",
                "-3",
                "1.5",
                "open",
                "done",
                "nan",
                "9" * 40,
            ]
        )
    return "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 250 if pick > 0.95 else 12)))


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["none", "bool", "int", "float", "str", "list", "dict"] if depth < 4 else ["none", "bool", "int", "str"]
    kind = rng.choice(kinds)
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, 1, -1, 2**63, -(2**63) - 1, 10**40, rng.randint(-1000, 1000)])
    if kind == "float":
        return rng.choice(
            [
                0.0,
                1.5,
                -2.0,
                math.nan,
                math.inf,
                -math.inf,
                1e300,
                rng.uniform(-1e6, 1e6),
            ]
        )
    if kind == "str":
        return _random_string(rng)
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    keys = rng.sample(_WORDS, rng.randint(0, len(_WORDS)))
    return {key: _random_json(rng, depth + 1) for key in keys}


FUZZED: list[Shape[Any]] = [
    TITLE,
    text(pattern=r"\w+", trim=False),
    COUNT,
    integer(),
    DONE,
    STATUS,
    optional(COUNT, default=1),
    items(COUNT, max=3),
    TODO,
    ORDER,
    obj(wrap=ORDER, many=items(TODO), maybe=optional(obj(flag=boolean()))),
]


@pytest.mark.parametrize("seed", range(6))
def test_fuzz_never_raises_and_ok_means_no_issues(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        data = _random_json(rng)
        # Half the time, go through JSON so the input is exactly what a request decodes to.
        if rng.random() < 0.5:
            data = json.loads(json.dumps(data))
        for shape in FUZZED:
            got = shape.parse(data)
            assert isinstance(got, Parsed)
            assert isinstance(got.issues, Issues)
            assert got.ok == (not got.issues)
            if not got.ok:
                assert got.value is None
            for path, message in got.issues.items():
                assert isinstance(path, str)
                assert message[:1].isupper() and message.endswith((".", "?")), message


def test_fuzz_with_mostly_valid_shapes_of_data() -> None:
    # Random inputs rarely look like a todo; mutate a valid one field by field instead.
    rng = random.Random(99)
    valid = {"title": "Milk", "count": "2", "done": "on", "status": "open"}
    for _ in range(300):
        data = dict(valid)
        key = rng.choice(list(valid))
        data[key] = _random_json(rng, depth=3)
        got = TODO.parse(data)
        assert got.ok == (not got.issues)
        assert set(got.issues) <= {key}


# --- adapters -------------------------------------------------------------------------


class FakeValidationError(ValueError):
    """Stands in for pydantic.ValidationError: only ``errors()`` matters."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("validation failed")
        self._errors = errors

    def errors(self) -> list[dict[str, Any]]:
        return self._errors


class FakeModel:
    """Duck-typed stand-in for a Pydantic v2 model class."""

    def __init__(self, title: str) -> None:
        self.title = title

    @classmethod
    def model_validate(cls, data: Any) -> FakeModel:
        if not isinstance(data, dict):
            raise FakeValidationError(
                [
                    {
                        "type": "model_type",
                        "loc": (),
                        "msg": "Input should be a valid dictionary",
                    }
                ]
            )
        errors: list[dict[str, Any]] = []
        if "title" not in data:
            errors.append({"type": "missing", "loc": ("title",), "msg": "Field required"})
        elif len(data["title"]) > 3:
            errors.append(
                {
                    "type": "string_too_long",
                    "loc": ("title",),
                    "msg": "String should have at most 3 characters",
                }
            )
        for index, line in enumerate(data.get("lines", [])):
            if "sku" not in line:
                errors.append(
                    {
                        "type": "missing",
                        "loc": ("lines", index, "sku"),
                        "msg": "Field required",
                    }
                )
            else:
                errors.append(
                    {
                        "type": "int_parsing",
                        "loc": ("lines", index, "sku"),
                        "msg": "Input should be an integer",
                    }
                )
        if errors:
            raise FakeValidationError(errors)
        return cls(data["title"])


def test_adapt_returns_shapes_as_is() -> None:
    assert adapt(TITLE) is TITLE
    assert adapt(TODO) is TODO


def test_adapt_duck_model_success() -> None:
    got = adapt(FakeModel).parse({"title": "abc"})
    assert got.ok
    assert isinstance(got.value, FakeModel)
    assert got.value.title == "abc"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({}, {"title": "Title is required."}, id="missing"),
        pytest.param(
            {"title": "abcd"},
            {"title": "Title: string should have at most 3 characters."},
            id="message-for-a-person",
        ),
        pytest.param(
            {"title": "a", "lines": [{"sku": "x"}, {}]},
            {
                "lines.0.sku": "Sku: input should be an integer.",
                "lines.1.sku": "Sku is required.",
            },
            id="dotted-paths",
        ),
        pytest.param([], {"": "Input should be a valid dictionary."}, id="not-a-dict"),
    ],
)
def test_adapt_duck_model_issues(data: Any, expected: dict[str, str]) -> None:
    check(adapt(FakeModel), data, Issues(expected))


def test_model_as_a_field_nests_paths() -> None:
    shape = obj(order=FakeModel, note=text())  # type: ignore[arg-type]
    assert shape.parse({"order": {"title": "abcd"}, "note": "x"}).issues == {
        "order.title": "Title: string should have at most 3 characters."
    }
    assert shape.parse({"note": "x"}).issues == {"order": "Order is required."}


def test_model_errors_without_errors_method_propagate() -> None:
    class Buggy:
        @classmethod
        def model_validate(cls, data: Any) -> None:
            raise KeyError("a bug, not bad input")

    with pytest.raises(KeyError):
        adapt(Buggy).parse({})


class ForeignParser:
    """Another library's validator: returns a plain value, raises ValueError."""

    def parse(self, data: Any) -> int:
        if data == "bad":
            raise ValueError("must not be bad")
        return 42


def test_adapt_foreign_parse() -> None:
    shape = adapt(ForeignParser())
    assert shape.parse("x") == Parsed(42, Issues())
    assert shape.parse("bad").issues == {"": "Must not be bad."}
    assert obj(answer=ForeignParser()).parse({"answer": "bad"}).issues == {  # type: ignore[arg-type]
        "answer": "Answer: must not be bad."
    }


def test_adapt_foreign_shape_passes_parsed_through() -> None:
    class Custom:
        def parse(self, data: Any) -> Parsed[str]:
            return Parsed(None, Issues({"x": "Nope."}))

    assert obj(c=Custom()).parse({"c": 1}).issues == {"c.x": "Nope."}


@pytest.mark.parametrize("thing", [42, "text", None, FakeModel("a").title])
def test_adapt_rejects_other_things(thing: Any) -> None:
    with pytest.raises(TypeError, match=rf"a Pydantic model class .*; got {thing!r}\.$"):
        adapt(thing)


def test_obj_rejects_a_field_that_is_not_a_shape() -> None:
    with pytest.raises(TypeError, match=r"got 'abc'\.$"):
        obj(title="abc")  # type: ignore[arg-type]


def test_real_pydantic_model() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Line(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        sku: int

    class Order(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        title: str = pydantic.Field(max_length=3)
        lines: list[Line] = pydantic.Field(default_factory=list)

    shape = adapt(Order)
    assert shape.parse({"title": "abc"}).value == Order(title="abc")
    assert shape.parse({"lines": [{"sku": "x"}, {}]}).issues == {
        "title": "Title is required.",
        "lines.0.sku": "Sku: input should be a valid integer, unable to parse string as an integer.",
        "lines.1.sku": "Sku is required.",
    }
    assert shape.parse({"title": "abcd"}).issues == {"title": "Title: string should have at most 3 characters."}
    assert shape.parse([]).ok is False


def test_doctests() -> None:
    result = doctest.testmod(shape_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10
    assert result.failed == 0
