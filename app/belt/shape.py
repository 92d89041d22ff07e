"""Validate incoming signals into a clean value or per-field issues a view can show.

Signals arrive as a dict decoded from a JSON body, from a urlencoded form (every value is
a string and an unchecked checkbox is simply absent) or from the ``datastar`` query
parameter. A shape turns any of those into ``Parsed(value, issues)``: ``issues`` maps a
field path (``"title"``, ``"items.2.name"``, ``""`` for the whole input) to one sentence
written for a person. Shapes are frozen and hold no per-request state, so one module-level
shape serves every greenlet; ``parse`` never raises on JSON-decodable input.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

__all__ = [
    "Issues",
    "Parsed",
    "Shape",
    "adapt",
    "boolean",
    "choice",
    "integer",
    "items",
    "obj",
    "optional",
    "text",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Issues(dict[str, str]):
    """Field path -> message for a person; an empty ``Issues`` means the input was fine.

    >>> Issues({"title": "Title is required."})
    {'title': 'Title is required.'}
    """


@dataclass(frozen=True)
class Parsed(Generic[T_co]):
    """What a shape made of the input: ``value`` when ``ok``, otherwise ``issues``.

    >>> Parsed(3, Issues()).ok
    True
    """

    value: T_co | None
    issues: Issues

    @property
    def ok(self) -> bool:
        """True when there are no issues (``value`` may still be ``None`` for optionals)."""
        return not self.issues


class Shape(Protocol[T_co]):
    """The small protocol any validator satisfies: ``parse(data) -> Parsed``."""

    def parse(self, data: Any) -> Parsed[T_co]: ...


# SQLite's INTEGER is 64-bit and the sqlite3 module raises OverflowError binding anything
# larger, so integer() never lets a value outside this range through.
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_MAX_DIGITS = 30
# ASCII digits only: int() alone would also take "١٢" and "1_000".
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
# C0 controls except \t and \n (\r is normalised away first), plus lone surrogates, which
# json.loads produces from "\ud800" and which SQLite cannot encode as UTF-8.
_BAD_CHAR = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff]")
_TRUE, _FALSE = frozenset({"on", "true", "1"}), frozenset({"false", "0", ""})


def _fail(message: str) -> Parsed[Any]:
    return Parsed(None, Issues({"": message}))


def _show(value: Any) -> str:
    """A short, safe rendering of an offending value for a message."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40] + "…")
    try:
        shown = repr(value)
    except ValueError:  # ints beyond sys.get_int_max_str_digits() refuse repr
        return "a very large number"
    return shown if len(shown) <= 40 else shown[:40] + "…"


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "None" if value is None else _show(value)


def _humanize(name: str) -> str:
    """``"due_date"`` or ``"dueDate"`` -> ``"Due date"``; acronyms such as ``ID`` stay."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    words = spaced.replace("_", " ").replace("-", " ").split()
    if not words:
        return "Value"
    first, *rest = words
    rest = [w.lower() if w == w.capitalize() else w for w in rest]
    return " ".join([first[:1].upper() + first[1:], *rest])


def _nest(prefix: str, issues: Mapping[str, str]) -> Issues:
    return Issues({f"{prefix}.{p}" if p else prefix: m for p, m in issues.items()})


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _check_bounds(low: int | None, high: int | None, where: str, *, counts: bool = True) -> None:
    if counts and low is not None and low < 0:
        raise ValueError(f"{where}(min={low!r}): min can't be negative; use min=0.")
    if low is not None and high is not None and high < low:
        raise ValueError(f"{where}(min={low!r}, max={high!r}): max is below min; swap them.")


@dataclass(frozen=True)
class _Base(Generic[T_co]):
    """Shared plumbing: ``name`` is the label the parent knows (field name), if any."""

    def parse(self, data: Any) -> Parsed[T_co]:
        return self._parse(data, None)

    def _parse(self, data: Any, name: str | None) -> Parsed[T_co]:
        raise NotImplementedError

    def _missing(self, name: str) -> Parsed[T_co]:
        return _fail(f"{self._label(name)} is required.")

    def _label(self, name: str | None) -> str:
        own: str | None = getattr(self, "label", None)
        return own or name or "Value"


@dataclass(frozen=True)
class _Text(_Base[str]):
    trim: bool
    min: int
    max: int | None
    pattern: re.Pattern[str] | None
    label: str | None
    pattern_message: str | None

    def _parse(self, data: Any, name: str | None) -> Parsed[str]:
        label = self._label(name)
        if data is None:
            return _fail(f"{label} is required.")
        if not isinstance(data, str):
            return _fail(f"{label} must be text (got {_show(data)}).")
        # Browsers submit textarea line breaks as CRLF (HTML spec), so normalise to \n.
        value = data.replace("\r\n", "\n").replace("\r", "\n")
        bad = _BAD_CHAR.search(value)  # before trimming: str.strip() eats \x1c-\x1f
        if bad:
            char, at = bad.group(), bad.start() + 1
            what = "an unpaired surrogate" if char >= "\ud800" else "a control character"
            return _fail(
                f"{label} contains {what} ({char!r} at character {at}); remove it "
                "(only tabs and line breaks are allowed)."
            )
        if self.trim:
            value = value.strip()
        # Length in code points; a browser's maxlength counts UTF-16 units, so an emoji
        # counts 2 there and 1 here: the server is never stricter than the form.
        size = len(value)
        if size == 0 and self.min > 0:
            return _fail(f"{label} can't be blank.")
        if size < self.min:
            return _fail(f"{label} must be at least {_plural(self.min, 'character')} (got {size}).")
        if self.max is not None and size > self.max:
            return _fail(f"{label} must be at most {_plural(self.max, 'character')} (got {size}).")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            return _fail(self.pattern_message or f"{label} is not in the expected format.")
        return Parsed(value, Issues())


def text(
    *,
    trim: bool = True,
    min: int = 0,
    max: int | None = None,
    pattern: str | None = None,
    label: str | None = None,
    pattern_message: str | None = None,
) -> Shape[str]:
    """Text: a string, trimmed, with no control characters, ``min``..``max`` characters long.

    ``min=1`` means "can't be blank" (after trimming). ``pattern`` must match the whole
    trimmed value (``re.fullmatch``); ``pattern_message`` replaces the generic message.
    Line breaks are normalised to ``\\n``; tabs and line breaks are the only controls kept.

    >>> text(max=5).parse("  hello ")
    Parsed(value='hello', issues={})
    >>> text(min=1, label="Title").parse("   ").issues
    {'': "Title can't be blank."}
    >>> text(max=3).parse(12).issues
    {'': 'Value must be text (got 12).'}
    """
    _check_bounds(min, max, "text")
    compiled = None
    if pattern is not None:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"text(pattern={pattern!r}) is not a valid regular expression: {exc}.") from exc
    return _Text(trim, min, max, compiled, label, pattern_message)


@dataclass(frozen=True)
class _Integer(_Base[int]):
    min: int | None
    max: int | None
    label: str | None

    def _parse(self, data: Any, name: str | None) -> Parsed[int]:
        label = self._label(name)
        number: int | None = None
        if data is None or (isinstance(data, str) and not data.strip()):
            return _fail(f"{label} is required.")
        if isinstance(data, bool):
            pass
        elif isinstance(data, int):
            number = data
        elif isinstance(data, float) and math.isfinite(data) and data.is_integer():
            number = int(data)
        elif isinstance(data, str):
            stripped = data.strip()
            if len(stripped) > _MAX_DIGITS:
                return _fail(
                    f"{label} must be a whole number of at most {_MAX_DIGITS} digits (got {len(stripped)} characters)."
                )
            if _INT_TEXT.fullmatch(stripped):
                number = int(stripped)
        if number is None:
            return _fail(f"{label} must be a whole number (got {_show(data)}).")
        low = _I64_MIN if self.min is None else self.min
        high = _I64_MAX if self.max is None else self.max
        shown = _show(data if isinstance(data, float) else number)
        if number < low:
            return _fail(f"{label} must be at least {low} (got {shown}).")
        if number > high:
            return _fail(f"{label} must be at most {high} (got {shown}).")
        return Parsed(number, Issues())


def integer(*, min: int | None = None, max: int | None = None, label: str | None = None) -> Shape[int]:
    """A whole number: an int, a form string of ASCII digits, or a float like ``3.0``.

    Booleans, ``"1.5"``, NaN, infinities and strings over 30 characters are issues, and
    the value always fits SQLite's 64-bit INTEGER even when ``min``/``max`` are unset.

    >>> integer(min=1).parse(" 42 ")
    Parsed(value=42, issues={})
    >>> integer(min=1, label="Count").parse(0).issues
    {'': 'Count must be at least 1 (got 0).'}
    >>> integer(label="Count").parse("abc").issues
    {'': "Count must be a whole number (got 'abc')."}
    """
    _check_bounds(min, max, "integer", counts=False)
    return _Integer(min, max, label)


@dataclass(frozen=True)
class _Boolean(_Base[bool]):
    label: str | None

    def _parse(self, data: Any, name: str | None) -> Parsed[bool]:
        if isinstance(data, bool):
            return Parsed(data, Issues())
        if isinstance(data, str):
            word = data.strip().lower()
            if word in _TRUE or word in _FALSE:
                return Parsed(word in _TRUE, Issues())
        return _fail(f"{self._label(name)} must be true or false (got {_show(data)}).")

    def _missing(self, name: str) -> Parsed[bool]:
        # An unchecked checkbox is simply absent from a submitted form.
        return Parsed(False, Issues())


def boolean(*, label: str | None = None) -> Shape[bool]:
    """True/False, or a form's ``"on"``/``"true"``/``"1"`` and ``"false"``/``"0"``/``""``.

    Inside :func:`obj` a missing boolean is ``False``: that is how a form says "unchecked".

    >>> boolean().parse("on")
    Parsed(value=True, issues={})
    >>> obj(done=boolean()).parse({})
    Parsed(value={'done': False}, issues={})
    """
    return _Boolean(label)


@dataclass(frozen=True)
class _Choice(_Base[str]):
    values: tuple[str, ...]
    label: str | None

    def _parse(self, data: Any, name: str | None) -> Parsed[str]:
        label = self._label(name)
        if isinstance(data, str) and data in self.values:
            return Parsed(data, Issues())
        if data is None or data == "":
            return _fail(f"{label} is required.")
        listed = ", ".join(repr(v) for v in self.values)
        message = f"{label} must be one of {listed} (got {_show(data)})."
        if isinstance(data, str):
            close = difflib.get_close_matches(data[:100], self.values, n=1)
            if close:
                message += f" Did you mean {close[0]!r}?"
        return _fail(message)


def choice(*values: str, label: str | None = None) -> Shape[str]:
    """One of a fixed set of strings (an enum), compared exactly.

    >>> choice("open", "done", label="Status").parse("x").issues
    {'': "Status must be one of 'open', 'done' (got 'x')."}
    >>> choice("open", "done").parse("done")
    Parsed(value='done', issues={})
    """
    if not values:
        raise ValueError("choice() needs at least one value, e.g. choice('open', 'done').")
    for v in values:
        if not isinstance(v, str):
            raise TypeError(f"choice() values must be strings; got {v!r}. Forms send strings.")
    if len(set(values)) != len(values):
        raise ValueError(f"choice() values must be distinct; got {values!r}.")
    return _Choice(values, label)


@dataclass(frozen=True)
class _Optional(_Base[T_co | None]):
    inner: _Base[T_co]
    default: Any

    def _parse(self, data: Any, name: str | None) -> Parsed[T_co | None]:
        if data is None or (isinstance(data, str) and not data.strip()):
            return self._missing(name or "Value")
        return self.inner._parse(data, name)

    def _missing(self, name: str) -> Parsed[T_co | None]:
        # A copy, so a caller mutating a list default can't change it for everyone else.
        return Parsed(copy.deepcopy(self.default), Issues())


def optional(inner: Shape[T], default: Any = None) -> Shape[T | None]:
    """``inner``, or ``default`` when the value is missing, ``None`` or a blank string.

    Blank counts as missing because an empty form field is sent as ``""``.

    >>> optional(integer()).parse("")
    Parsed(value=None, issues={})
    >>> optional(integer(), default=5).parse("7")
    Parsed(value=7, issues={})
    """
    return _Optional(_adapt(inner), default)


@dataclass(frozen=True)
class _Obj(_Base[dict[str, Any]]):
    fields: tuple[tuple[str, _Base[Any]], ...]

    def _parse(self, data: Any, name: str | None) -> Parsed[dict[str, Any]]:
        if not isinstance(data, Mapping):
            if name is None:
                return _fail(f"Expected an object of fields (got {_kind(data)}).")
            if data is None:
                return self._missing(name)
            return _fail(f"{name} must be an object of fields (got {_kind(data)}).")
        value: dict[str, Any] = {}
        issues = Issues()
        getlist = getattr(data, "getlist", None)  # werkzeug MultiDict: repeated form keys
        for key, shape in self.fields:
            label = _humanize(key)
            if key not in data:
                got = shape._missing(label)
            elif callable(getlist) and _wants_list(shape):
                got = shape._parse(getlist(key), label)
            else:
                got = shape._parse(data[key], label)
            if got.issues:
                issues.update(_nest(key, got.issues))
            else:
                value[key] = got.value
        return Parsed(None, issues) if issues else Parsed(value, Issues())


def _wants_list(shape: _Base[Any]) -> bool:
    inner = shape.inner if isinstance(shape, _Optional) else shape
    return isinstance(inner, _Items)


def obj(**fields: Shape[Any]) -> Shape[dict[str, Any]]:
    """An object of named fields; unknown keys are ignored (Datastar sends every signal).

    A missing field is "required" unless it is :func:`optional`, a :func:`boolean`
    (``False``) or :func:`items` (empty). Labels default to the field name, humanised.
    A werkzeug ``MultiDict`` (``request.form``) works too.

    >>> todo = obj(title=text(min=1, max=200), due_date=integer(), done=boolean())
    >>> todo.parse({"title": " Milk ", "due_date": "3", "extra": 1})
    Parsed(value={'title': 'Milk', 'due_date': 3, 'done': False}, issues={})
    >>> todo.parse({"title": ""}).issues
    {'title': "Title can't be blank.", 'due_date': 'Due date is required.'}
    >>> todo.parse([]).issues
    {'': 'Expected an object of fields (got a list).'}
    """
    return _Obj(tuple((key, _adapt(shape)) for key, shape in fields.items()))


@dataclass(frozen=True)
class _Items(_Base[list[T_co]]):
    inner: _Base[T_co]
    min: int
    max: int | None
    label: str | None

    def _parse(self, data: Any, name: str | None) -> Parsed[list[T_co]]:
        label = self._label(name)
        if data is None:
            data = []
        if not isinstance(data, list | tuple):
            return _fail(f"{label} must be a list (got {_show(data)}).")
        count = len(data)
        if self.max is not None and count > self.max:  # don't do work on oversized input
            return _fail(f"{label} must have at most {_plural(self.max, 'item')} (got {count}).")
        issues = Issues()
        if count < self.min:
            issues[""] = f"{label} must have at least {_plural(self.min, 'item')} (got {count})."
        known = self.label or name
        value: list[T_co] = []
        for index, element in enumerate(data):
            each = f"{known} item {index + 1}" if known else f"Item {index + 1}"
            got = self.inner._parse(element, each)
            if got.issues:
                issues.update(_nest(str(index), got.issues))
            else:
                value.append(got.value)  # type: ignore[arg-type]  # ok => value is set
        return Parsed(None, issues) if issues else Parsed(value, Issues())

    def _missing(self, name: str) -> Parsed[list[T_co]]:
        # No checkbox of a group checked means the key is absent: that is an empty list.
        return self._parse([], name)


def items(inner: Shape[T], *, min: int = 0, max: int | None = None, label: str | None = None) -> Shape[list[T]]:
    """A list of ``inner`` values, ``min``..``max`` long; issues are at ``"<index>.<path>"``.

    ``None`` or a missing field counts as an empty list.

    >>> items(obj(name=text(min=1)), max=3).parse([{"name": "a"}, {}]).issues
    {'1.name': 'Name is required.'}
    >>> obj(tags=items(text(), min=1)).parse({"tags": []}).issues
    {'tags': 'Tags must have at least 1 item (got 0).'}
    """
    _check_bounds(min, max, "items")
    return _Items(_adapt(inner), min, max, label)


def _sentence(msg: str) -> str:
    if msg[1:2].islower():  # "String should..." -> "string should...", but keep "URL ..."
        msg = msg[:1].lower() + msg[1:]
    return msg if msg.endswith((".", "!", "?")) else msg + "."


def _issues_from(exc: Exception, name: str | None) -> Issues:
    """Pydantic-style ``exc.errors()`` (``loc`` tuple, ``msg``, ``type``) -> Issues."""
    issues = Issues()
    errors = getattr(exc, "errors", None)
    found = errors() if callable(errors) else [{"loc": (), "msg": str(exc)}]
    for error in found:
        loc = tuple(error.get("loc", ()))
        path = ".".join(str(part) for part in loc)
        words = [part for part in loc if isinstance(part, str)]
        label = _humanize(words[-1]) if words else name
        if error.get("type") == "missing":
            message = f"{label or 'Value'} is required."
        else:
            message = _sentence(str(error.get("msg") or "is invalid"))
            message = f"{label}: {message}" if label else message[:1].upper() + message[1:]
        issues.setdefault(path, message)
    return issues


@dataclass(frozen=True)
class _Model(_Base[Any]):
    """A Pydantic v2 model class, or anything else with ``model_validate``."""

    model: Any

    def _parse(self, data: Any, name: str | None) -> Parsed[Any]:
        try:
            value = self.model.model_validate(data)
        except Exception as exc:  # only errors that describe themselves are user input
            if not callable(getattr(exc, "errors", None)):
                raise
            return Parsed(None, _issues_from(exc, name))
        return Parsed(value, Issues())


@dataclass(frozen=True)
class _Foreign(_Base[Any]):
    """Another library's validator with ``parse``: a ``Parsed`` passes through, a plain
    return value is the value, and a ``ValueError`` becomes issues."""

    target: Any

    def _parse(self, data: Any, name: str | None) -> Parsed[Any]:
        try:
            result = self.target.parse(data)
        except ValueError as exc:
            return Parsed(None, _issues_from(exc, name))
        return result if isinstance(result, Parsed) else Parsed(result, Issues())


def _adapt(model: Any) -> _Base[Any]:
    if isinstance(model, _Base):
        return model
    if callable(getattr(model, "model_validate", None)):
        return _Model(model)
    if callable(getattr(model, "parse", None)):
        return _Foreign(model)
    raise TypeError(
        f"Expected a shape (text(), obj(), ...), a Pydantic model class (with model_validate) "
        f"or an object with a .parse(data) method; got {model!r}."
    )


def adapt(model: Any) -> Shape[Any]:
    """Make a shape of ``model``: a shape as is, a Pydantic v2 model class, or a ``.parse``.

    Pydantic is never imported here: ``model_validate`` is called and the raised error's
    ``errors()`` (``loc``, ``msg``) become Issues with dotted paths. :func:`obj`,
    :func:`items` and :func:`optional` adapt their fields, so a model can be a field.

    >>> shape = text()
    >>> adapt(shape) is shape
    True
    >>> adapt(42)
    Traceback (most recent call last):
    TypeError: Expected a shape (text(), obj(), ...), a Pydantic model class ... got 42.
    """
    return _adapt(model)
