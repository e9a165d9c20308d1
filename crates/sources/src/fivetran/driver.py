# Runs a connector written for the Fivetran Connector SDK (fivetran-connector-sdk
# 3.x) under tributary, unchanged. tributary starts this file with the
# virtualenv's Python (`python -c <this file> MODE ...`).
#
# The SDK 3.x runs a connector in process: its `Connector` hands what
# `update()` emits to a `fivetran_connector_sdk_core.Sink` (records, truncates,
# checkpoints, warnings, errors). `fivetran debug` gives it a sink that writes
# DuckDB; this file gives it one that writes one JSON line per operation to
# tributary, which delivers the records and commits the checkpoints.
#
#   MODE schema PROJECT CONFIG_FILE             -> {"type":"schema",...}
#   MODE update PROJECT CONFIG_FILE STATE_FILE  -> schema, then every operation, then {"type":"done"}
#
# The protocol has the process's original stdout to itself: everything the
# connector prints (print(), the SDK's Logging, C extensions writing to fd 1)
# goes to stderr instead, or, for the SDK's log lines, into {"type":"log"}.
import base64
import hashlib
import json
import os
import sys
import traceback

PROTOCOL_VERSION = 1

_out = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n", buffering=1 << 16)
os.dup2(2, 1)


def emit(message):
    _out.write(json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False))
    _out.write("\n")


def flush():
    _out.flush()


class _Stdout:
    """sys.stdout for the connector: the SDK's JSON log lines become protocol
    log messages at their level; any other text goes to stderr."""

    def __init__(self):
        self._partial = ""

    def write(self, text):
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self._line(line)
        return len(text)

    def _line(self, line):
        if line.startswith('{"level":'):
            try:
                entry = json.loads(line)
                emit({"type": "log", "level": str(entry.get("level", "INFO")), "message": str(entry.get("message", ""))})
                return
            except ValueError:
                pass
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def flush(self):
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        sys.stderr.flush()

    def isatty(self):
        return False

    def fileno(self):
        return 1


sys.stdout = _Stdout()


def fail(kind, message):
    sys.stdout.flush()
    emit({"type": kind, "message": message})
    flush()
    sys.exit(1)


try:
    import fivetran_connector_sdk  # noqa: F401  (the public package name; sets up its modules)
    from fivetran_connector_sdk_common import __version__ as SDK_VERSION
    from fivetran_connector_sdk_common import constants as sdk_constants
    from fivetran_connector_sdk_common.logger import Logging
    from fivetran_connector_sdk_cli import core_adapter, schema_processing
    from fivetran_connector_sdk_cli.cli_helpers import find_connector_object
    from fivetran_connector_sdk_core import ConnectorTask
    from fivetran_connector_sdk_core import tasks as sdk_tasks
    from fivetran_connector_sdk_core.cells import decode_row_data, Json
    from fivetran_connector_sdk_core.model import DataType, RecordType
except ImportError as e:
    fail("config_error", f"{sys.executable} cannot import the Fivetran Connector SDK ({e}); "
                         "install it into that virtualenv: pip install fivetran-connector-sdk==3.0.0")

if not SDK_VERSION.startswith("3."):
    fail("config_error", f"fivetran-connector-sdk {SDK_VERSION} is installed in {sys.executable}; "
                         "tributary runs connectors with the SDK 3.x: pip install fivetran-connector-sdk==3.0.0")

# As on Fivetran (not `fivetran debug`): log lines are JSON, and no prompt,
# version check or crash report runs.
sdk_constants.DEBUGGING = False
Logging.LOG_LEVEL = Logging.Level.DEBUG

_TYPE_NAMES = {t.value: t.name for t in DataType}
_INTEGERS = {DataType.SHORT, DataType.INT, DataType.LONG}
_FLOATS = {DataType.FLOAT, DataType.DOUBLE}


def table_json(table):
    columns, key = {}, []
    for column in table.columns:
        if column.primary_key:
            key.append(column.name)
        if column.type != DataType.UNSPECIFIED:
            entry = {"type": _TYPE_NAMES.get(int(column.type), "UNSPECIFIED")}
            if column.type == DataType.DECIMAL and column.decimal is not None:
                entry["precision"] = column.decimal.precision
                entry["scale"] = column.decimal.scale
            columns[column.name] = entry
    return {"table": table.name, "schema": table.schema, "primary_key": key, "columns": columns}


def _scalar(text, declared):
    """A text cell as JSON: by its declared type, else as Fivetran infers an
    untyped column's type from its values (booleans, integers, decimals)."""
    if declared == DataType.BOOLEAN:
        return text.lower() in ("true", "t", "1")
    if declared in _INTEGERS:
        try:
            return int(text)
        except ValueError:
            return text
    if declared is not None and declared != DataType.UNSPECIFIED:
        return text  # strings, decimals (exact as text), dates and times
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if text and (text.isdigit() or (text[0] == "-" and text[1:].isdigit())):
        digits = text.lstrip("-")
        if len(digits) == 1 or digits[0] != "0":
            number = int(text)
            if -(1 << 63) <= number < (1 << 63):
                return number
    return text


def _float(text):
    try:
        number = float(text)
    except ValueError:
        return text
    if number != number or number in (float("inf"), float("-inf")):
        return text  # NaN and infinities are not JSON numbers
    return number


def decode(cells, declared_types):
    row = {}
    for name, cell in cells.items():
        declared = declared_types.get(name)
        if cell is None:
            row[name] = None
        elif isinstance(cell, Json):
            row[name] = json.loads(cell)
        elif isinstance(cell, bytes):
            row[name] = base64.b64encode(cell).decode("ascii")
        elif isinstance(cell, float):
            row[name] = _float(cell.text or repr(float(cell)))
        else:
            row[name] = _scalar(cell, declared)
    return row


def fivetran_id(cells):
    """The key of a row of a table without a primary key, as Fivetran makes it:
    a hash of its columns in name order."""
    text = "\x1f".join(f"{name}={cells[name]!r}" for name in sorted(cells))
    return base64.b64encode(hashlib.sha1(text.encode("utf-8")).digest()).decode("ascii")


class TributarySink:
    """fivetran_connector_sdk_core.Sink: every operation becomes a line."""

    def __init__(self):
        self.failure = None

    def _types(self, schema, table):
        declared = schema_processing.TABLES.get((schema, table))
        if declared is None:
            return {}, False
        types = {c.name: c.type for c in declared.columns}
        return types, any(c.primary_key for c in declared.columns)

    def _check(self):
        if self.failure is not None:
            raise self.failure

    def record(self, record):
        self._check()
        types, keyed = self._types(record.schema, record.table)
        cells = decode_row_data(record.row_data)
        data = decode(cells, types)
        if not keyed and record.type != RecordType.DELETE:
            data["_fivetran_id"] = fivetran_id(cells)
        op = {RecordType.UPSERT: "upsert", RecordType.UPDATE: "update", RecordType.DELETE: "delete"}[record.type]
        emit({"type": op, "table": record.table, "schema": record.schema, "data": data})

    def truncate(self, truncate):
        self._check()
        emit({"type": "truncate", "table": truncate.table, "schema": truncate.schema, "deferred": bool(truncate.deferred)})

    def file_chunk(self, chunk):
        self._check()
        self.failure = RuntimeError("tributary does not take file uploads (op.upsert(..., file=...)) from a Fivetran connector")
        raise self.failure

    def checkpoint(self, checkpoint):
        self._check()
        emit({"type": "checkpoint", "state": json.loads(checkpoint.state_json)})
        # Written through before update() goes on, so that a crash right
        # after it cannot lose a checkpoint the connector believes made.
        flush()

    def warning(self, warning):
        message, trace = sdk_tasks.parse(warning.message, "warning message")
        emit({"type": "log", "level": "WARNING", "message": message + (f"\n{trace}" if trace else "")})

    def task(self, task):
        message, trace = sdk_tasks.parse(task.message, "task message")
        emit({"type": "error", "message": message, "trace": trace})
        flush()
        self.failure = ConnectorTask(message, trace)
        raise self.failure


def read_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        fail("config_error", f"cannot read the {what} tributary wrote ({e})")
    if not isinstance(value, dict):
        fail("config_error", f"the {what} must be a JSON object")
    return value


def load_connector(project):
    connector = find_connector_object(project)  # the SDK's own loader and messages
    if connector is None:
        fail("config_error", f"no `connector = Connector(...)` could be loaded from {os.path.join(project, 'connector.py')} "
                             "(the reason is logged above)")
    return connector


def schema_of(source, configuration):
    try:
        result = source.schema(configuration)
    except Exception as e:
        fail("failed", str(e))
    if result.not_supported:
        return {"type": "schema", "not_supported": True, "tables": []}
    return {"type": "schema", "not_supported": False, "tables": [table_json(t) for t in result.tables or []]}


def main(argv):
    if len(argv) < 3 or argv[0] not in ("schema", "update"):
        fail("config_error", "usage: driver (schema PROJECT CONFIG | update PROJECT CONFIG STATE)")
    mode, project, config_path = argv[0], os.path.abspath(argv[1]), argv[2]
    configuration = read_json(config_path, "configuration")
    os.chdir(project)
    connector = load_connector(project)
    source = core_adapter.ConnectorSource(connector)
    emit({"type": "hello", "protocol": PROTOCOL_VERSION, "sdk": SDK_VERSION})
    emit(schema_of(source, configuration))
    if mode == "schema":
        flush()
        return
    state = read_json(argv[3], "state")
    flush()
    sink = TributarySink()
    try:
        source.update(configuration, state, sink)
        if sink.failure is not None:  # raised in a thread, or caught by the connector
            raise sink.failure
    except ConnectorTask:
        sys.stdout.flush()
        flush()
        sys.exit(1)
    except Exception as e:
        fail("failed", str(e) or "".join(traceback.format_exception(e)))
    sys.stdout.flush()
    emit({"type": "done"})
    flush()


main(sys.argv[1:])
