"""A parameter form generated from a task's pydantic ``Params`` model.

Each field becomes an editor chosen from its annotation (numbers and lists as text, booleans as
check boxes, ``Literal`` choices as combo boxes, nested models as group boxes), labelled with its
name and the unit its name ends in (``hold_ms`` -> "hold (ms)"), with the field description as a
tooltip. Every edit re-validates the whole model with pydantic, so the rules live in one place
(``tasks.params``): a refused value shows its message in red under the field and the form reports
itself invalid until it is fixed.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ValidationError
from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

# Name suffix -> unit label. Longest suffixes first so "_ms" does not shadow "_ms_list" etc.
UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_rpm", "rpm"),
    ("_min", "min"),
    ("_ms", "ms"),
    ("_us", "µs"),
    ("_mm", "mm"),
    ("_ul", "µl"),
    ("_hz", "Hz"),
    ("_px", "px"),
    ("_trials", "trials"),
    ("_s", "s"),
)
_ERROR_STYLE = "color: #c62828;"
_BAD_EDIT_STYLE = "border: 1px solid #c62828;"


def unit_of(field_name: str) -> str:
    """Unit named by a field's suffix (``"hold_ms"`` -> ``"ms"``), or ``""``."""
    for suffix, unit in UNIT_SUFFIXES:
        if field_name.endswith(suffix):
            return unit
    return ""


def label_of(field_name: str) -> str:
    """Human label with the unit in brackets: ``"iti_min_s"`` -> ``"iti min (s)"``."""
    unit = unit_of(field_name)
    for suffix, u in UNIT_SUFFIXES:
        if u == unit and unit and field_name.endswith(suffix):
            base = field_name[: -len(suffix)]
            return f"{base.replace('_', ' ')} ({unit})"
    return field_name.replace("_", " ")


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


class _FieldEditor:
    """One leaf field: its editor widget, text <-> value conversion and its error label."""

    def __init__(self, name: str, annotation: Any, default: Any, description: str | None) -> None:
        self.name = name
        inner, self.optional = _strip_optional(annotation)
        self.kind: str
        self.error = QLabel()
        self.error.setStyleSheet(_ERROR_STYLE)
        self.error.setWordWrap(True)
        self.error.hide()
        self.widget: QWidget
        if inner is bool:
            self.kind = "bool"
            box = QCheckBox()
            box.setChecked(bool(default))
            self.widget = box
        elif typing.get_origin(inner) is Literal:
            self.kind = "choice"
            combo = QComboBox()
            if self.optional:
                combo.addItem("(none)", None)
            for choice in typing.get_args(inner):
                combo.addItem(str(choice), choice)
            combo.setCurrentIndex(max(0, combo.findData(default)))
            self.widget = combo
        else:
            self.kind = "list" if typing.get_origin(inner) is list else "text"
            edit = QLineEdit(self._to_text(default))
            if self.optional:
                edit.setPlaceholderText("empty = none")
            self.widget = edit
        self.widget.setObjectName(name)
        if description:
            self.widget.setToolTip(description)

    @staticmethod
    def _to_text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        if isinstance(value, float) and value.is_integer():
            return str(int(value)) if abs(value) < 1e15 else str(value)
        return str(value)

    def set_value(self, value: Any) -> None:
        if isinstance(self.widget, QCheckBox):
            self.widget.setChecked(bool(value))
        elif isinstance(self.widget, QComboBox):
            self.widget.setCurrentIndex(max(0, self.widget.findData(value)))
        elif isinstance(self.widget, QLineEdit):
            self.widget.setText(self._to_text(value))

    def value(self) -> Any:
        """The raw value for pydantic (text is parsed only as far as YAML goes; pydantic judges)."""
        if isinstance(self.widget, QCheckBox):
            return self.widget.isChecked()
        if isinstance(self.widget, QComboBox):
            return self.widget.currentData()
        assert isinstance(self.widget, QLineEdit)
        text = self.widget.text().strip()
        if text == "" and self.optional:
            return None
        if self.kind == "list":
            if text == "":
                return []
            try:
                parsed = yaml.safe_load(text if text.startswith("[") else f"[{text}]")
            except yaml.YAMLError:
                return text  # pydantic then says "Input should be a valid list"
            return parsed
        return text

    def show_error(self, message: str | None) -> None:
        if message:
            self.error.setText(message)
            self.error.show()
            self.widget.setStyleSheet(_BAD_EDIT_STYLE)
        else:
            self.error.clear()
            self.error.hide()
            self.widget.setStyleSheet("")


class ParamsForm(QWidget):
    """Editable form for a pydantic model class.

    Parameters
    ----------
    model : type[BaseModel]
        The task's params model (e.g. ``tasks.params.MixedParams``).
    values : dict, optional
        Initial values (e.g. the subject's shaping state); defaults elsewhere.

    Signals
    -------
    validity_changed(bool)
        Emitted when the form turns valid or invalid.
    """

    validity_changed = pyqtSignal(bool)

    def __init__(
        self,
        model: type[BaseModel],
        values: dict[str, Any] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.model = model
        self.editors: dict[tuple[str, ...], _FieldEditor] = {}
        self.group_errors: dict[tuple[str, ...], QLabel] = {}
        self._valid: bool | None = None
        self._params: BaseModel | None = None
        self.errors: dict[str, str] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._build(model, ()))
        if values:
            self.set_values(values)
        self.revalidate()

    def _build(self, model: type[BaseModel], path: tuple[str, ...]) -> QWidget:
        box = QGroupBox(path[-1].replace("_", " ") if path else model.__name__)
        form = QFormLayout(box)
        group_error = QLabel()
        group_error.setStyleSheet(_ERROR_STYLE)
        group_error.setWordWrap(True)
        group_error.hide()
        form.addRow(group_error)
        self.group_errors[path] = group_error
        for name, info in model.model_fields.items():
            inner, _ = _strip_optional(info.annotation)
            if _is_model(inner):
                form.addRow(self._build(inner, (*path, name)))
                continue
            default = info.get_default(call_default_factory=True)
            ed = _FieldEditor(name, info.annotation, default, info.description)
            self.editors[(*path, name)] = ed
            column = QWidget()
            col = QVBoxLayout(column)
            col.setContentsMargins(0, 0, 0, 0)
            col.setSpacing(1)
            col.addWidget(ed.widget)
            col.addWidget(ed.error)
            label = QLabel(label_of(name))
            if info.description:
                label.setToolTip(info.description)
            form.addRow(label, column)
            self._connect(ed)
        return box

    def _connect(self, ed: _FieldEditor) -> None:
        w = ed.widget
        if isinstance(w, QCheckBox):
            w.toggled.connect(self.revalidate)
        elif isinstance(w, QComboBox):
            w.currentIndexChanged.connect(self.revalidate)
        elif isinstance(w, QLineEdit):
            w.textChanged.connect(self.revalidate)

    # ------------------------------------------------------------------ values
    def raw_values(self) -> dict[str, Any]:
        """Nested dict of the editors' values, before validation."""
        out: dict[str, Any] = {}
        for path, ed in self.editors.items():
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = ed.value()
        return out

    def set_values(self, values: dict[str, Any], _path: tuple[str, ...] = ()) -> None:
        """Fill editors from a (possibly partial) nested dict; unknown keys raise ``KeyError``."""
        for key, value in values.items():
            path = (*_path, key)
            if isinstance(value, dict) and path in self.group_errors:
                self.set_values(value, path)
            elif path in self.editors:
                self.editors[path].set_value(value)
            else:
                raise KeyError(f"{self.model.__name__} has no field {'.'.join(path)!r}")
        if not _path:
            self.revalidate()

    def editor(self, dotted: str) -> QWidget:
        """The editor widget of a field, by dotted path (``"cue_triggered.tone_ms"``)."""
        return self.editors[tuple(dotted.split("."))].widget

    # ------------------------------------------------------------------ validation
    def revalidate(self) -> bool:
        """Validate the whole model, show each error next to its field; return validity."""
        errors: dict[tuple[str, ...], list[str]] = {}
        try:
            self._params = self.model.model_validate(self.raw_values())
        except ValidationError as e:
            self._params = None
            for err in e.errors(include_url=False):
                loc = tuple(str(p) for p in err["loc"])
                # Errors inside a list item (ramp_ms.2) belong to the list field.
                while loc and loc not in self.editors and loc not in self.group_errors:
                    loc = loc[:-1]
                msg = err["msg"].removeprefix("Value error, ")
                errors.setdefault(loc, []).append(msg)
        for path, ed in self.editors.items():
            ed.show_error("; ".join(errors.get(path, [])) or None)
        for path, label in self.group_errors.items():
            msgs = errors.get(path, [])
            label.setText("; ".join(msgs))
            label.setVisible(bool(msgs))
        self.errors = {".".join(k) or "(model)": "; ".join(v) for k, v in errors.items()}
        valid = self._params is not None
        if valid != self._valid:
            self._valid = valid
            self.validity_changed.emit(valid)
        return valid

    @property
    def valid(self) -> bool:
        return bool(self._valid)

    def params(self) -> BaseModel | None:
        """The validated model, or ``None`` while any field is invalid."""
        return self._params
