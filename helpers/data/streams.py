"""Time series for anomaly detection: a taxi-like default stream with labelled anomaly windows,
NAB files (CSV + label-window JSON) and any CSV with a value column.

Taught in notebooks/01_random_cut_forest.ipynb.
"""

from __future__ import annotations

import csv
import json
import math
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "Stream",
    "taxi_stream",
    "load_nab",
    "fetch_nab",
    "load_csv",
    "labels_from_windows",
    "shingle_windows",
    "ANOMALY_KINDS",
    "NAB_FILES",
]

ANOMALY_KINDS = ("spike", "dip", "level shift", "daily shape")
# anomaly strengths: added in units of the series' median (spike, shape) or multiplying the values (dip, shift)
SPIKE, DIP, SHIFT, SHAPE = 3.0, 0.1, (1.8, 2.2), 2.5
NAB_URL = "https://raw.githubusercontent.com/numenta/NAB/master"
# the files of NAB's realKnownCause folder; the label windows of every file sit in one JSON
NAB_FILES = {
    "nyc_taxi": "realKnownCause/nyc_taxi.csv",
    "machine_temperature_system_failure": "realKnownCause/machine_temperature_system_failure.csv",
    "ambient_temperature_system_failure": "realKnownCause/ambient_temperature_system_failure.csv",
    "cpu_utilization_asg_misconfiguration": "realKnownCause/cpu_utilization_asg_misconfiguration.csv",
    "ec2_request_latency_system_failure": "realKnownCause/ec2_request_latency_system_failure.csv",
    "rogue_agent_key_hold": "realKnownCause/rogue_agent_key_hold.csv",
    "rogue_agent_key_updown": "realKnownCause/rogue_agent_key_updown.csv",
}
NAB_LABELS = "labels/combined_windows.json"


@dataclass(frozen=True)
class Stream:
    """A time series with its labelled anomaly windows.

    values:     (n,) or (n, k) floats
    timestamps: (n,) datetime64[s]
    windows:    [(start, stop), ...] index ranges (stop exclusive) labelled anomalous
    kinds:      what each window is ("spike", "dip", "level shift", "daily shape", or "labelled")
    labelled:   whether windows were given at all (an unlabelled CSV has none)
    """

    values: np.ndarray
    timestamps: np.ndarray
    windows: list[tuple[int, int]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    labelled: bool = True
    name: str = ""
    points_per_day: int | None = None


# ----------------------------------------------------------------------------------------------
# The default stream
# ----------------------------------------------------------------------------------------------
def _bump(hour: np.ndarray, centre: float, width: float) -> np.ndarray:
    """A smooth bump on the 24-hour circle (von Mises shape), 1 at `centre`, about `width` hours wide."""
    kappa = 1.0 / (2 * math.pi * width / 24) ** 2
    return np.exp(kappa * (np.cos(2 * math.pi * (hour - centre) / 24) - 1))


def _weekday_profile(hour: np.ndarray) -> np.ndarray:
    # quiet small hours, a morning commute, a busy afternoon and the evening peak
    return 0.12 + 0.45 * _bump(hour, 8.5, 1.6) + 0.40 * _bump(hour, 13.5, 3.0) + 0.80 * _bump(hour, 19.0, 2.4)


def _weekend_profile(hour: np.ndarray) -> np.ndarray:
    # a late start, a long afternoon and busy small hours after the night out
    return 0.18 + 0.40 * _bump(hour, 14.0, 3.5) + 0.65 * _bump(hour, 20.5, 3.0) + 0.40 * _bump(hour, 1.0, 2.0)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def taxi_stream(
    num_weeks: int = 30,
    seed: int = 0,
    points_per_day: int = 48,
    num_anomalies: int | None = None,
    noise: float = 0.04,
    warmup_days: int = 14,
) -> Stream:
    """A taxi-ridership-like series (NAB's nyc_taxi: passengers per half hour) with labelled anomalies.

    Daily and weekly seasonality (weekday and weekend profiles), a slow trend, multiplicative noise,
    and anomaly windows cycling through four kinds: a spike (an event's surge for a few hours), a dip
    (a storm day), a level shift (two days at a different level) and a changed daily shape (a day
    whose traffic peaks in the small hours). Anomalies start after `warmup_days` and never overlap;
    by default about one every five weeks (30 weeks is the length of NAB's nyc_taxi).
    Returns values (num_weeks * 7 * points_per_day,).
    """
    num_weeks = _check_int("num_weeks", num_weeks, 3)
    seed = _check_int("seed", seed, 0)
    points_per_day = _check_int("points_per_day", points_per_day, 4)
    warmup_days = _check_int("warmup_days", warmup_days, 1)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (0 <= noise < 0.5):
        raise ValueError(f"noise: expected a number in [0, 0.5), got {noise!r}")
    num_days = num_weeks * 7
    if warmup_days > num_days - 3:
        raise ValueError(f"warmup_days: expected fewer than {num_days - 3} days for {num_weeks} weeks, got {warmup_days}")
    spacing = 5  # days between anomaly starts, so each one is judged against normal days
    capacity = (num_days - 3 - warmup_days) // spacing + 1
    if num_anomalies is None:
        num_anomalies = min(capacity, max(4, num_weeks // 5))
    num_anomalies = _check_int("num_anomalies", num_anomalies, 0)
    if num_anomalies > capacity:
        raise ValueError(f"num_anomalies: at most {capacity} fit in {num_weeks} weeks after {warmup_days} warm-up days, got {num_anomalies}")
    rng = np.random.default_rng(seed)

    n = num_days * points_per_day
    step = 24.0 / points_per_day
    t = np.arange(n)
    hour = (t % points_per_day) * step
    day = t // points_per_day
    weekend = (day % 7) >= 5  # day 0 is a Monday
    shape = np.where(weekend, _weekend_profile(hour), _weekday_profile(hour))
    trend = 1.0 + 0.02 * np.sin(2 * math.pi * t / n + rng.uniform(0, 2 * math.pi))
    # noise: independent jitter plus a slowly wandering component (AR(1))
    wander = np.zeros(n)
    shocks = rng.standard_normal(n) * noise * 0.2
    for i in range(1, n):
        wander[i] = 0.97 * wander[i - 1] + shocks[i]
    values = 15000.0 * trend * shape * (1 + noise * rng.standard_normal(n) + wander)
    typical = float(np.median(values))

    # anomaly days: spread evenly after the warm-up with a random offset each, kinds shuffled per cycle
    windows: list[tuple[int, int]] = []
    kinds: list[str] = []
    if num_anomalies:
        slots = np.linspace(warmup_days, num_days - 3 - spacing + 1, num_anomalies).astype(int)
        order = [k for _ in range(math.ceil(num_anomalies / 4)) for k in rng.permutation(ANOMALY_KINDS)]
        for slot, kind in zip(slots, order):
            base = int(slot + rng.integers(0, spacing - 2)) * points_per_day
            if kind == "spike":  # an event lets out: a few hours of extra riders
                start = base + int(round(rng.uniform(9, 19) / step))
                stop = start + max(2, int(round(3 / step)))
                values[start:stop] += SPIKE * typical * np.sin(np.linspace(0, math.pi, stop - start + 2)[1:-1])
            elif kind == "dip":  # a storm: the city stays home from morning to night
                start, stop = base + int(round(7 / step)), base + int(round(23 / step))
                values[start:stop] *= DIP
            elif kind == "level shift":  # a day and a half at about twice the level (a transit strike)
                start, stop = base, base + int(round(36 / step))
                values[start:stop] *= rng.uniform(*SHIFT)
            else:  # "daily shape": the evening peak moves into the small hours (a New Year's Eve)
                start, stop = base + int(round(17 / step)), base + int(round(28 / step))
                hours = (t[start:stop] % points_per_day) * step
                values[start:stop] += typical * (SHAPE * _bump(hours, 1.0, 2.0) - 0.6 * _bump(hours, 19.0, 1.5))
            windows.append((int(start), int(stop)))
            kinds.append(str(kind))
    values = np.maximum(values, 0.0)
    timestamps = np.datetime64("2014-07-07T00:00:00") + (t * int(round(step * 3600))).astype("timedelta64[s]")
    return Stream(values=values, timestamps=timestamps, windows=windows, kinds=kinds, labelled=True,
                  name=f"taxi-like stream (seed {seed})", points_per_day=points_per_day)


# ----------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------
def _check_windows(windows: Sequence[Sequence[int]], length: int) -> list[tuple[int, int]]:
    out = []
    for i, window in enumerate(windows):
        if len(window) != 2:
            raise ValueError(f"windows[{i}]: expected (start, stop), got {window!r}")
        start, stop = int(window[0]), int(window[1])
        if not 0 <= start < stop <= length:
            raise ValueError(f"windows[{i}]: expected 0 <= start < stop <= {length}, got {(start, stop)}")
        out.append((start, stop))
    return out


def labels_from_windows(length: int, windows: Sequence[Sequence[int]]) -> np.ndarray:
    """(length,) bool: True inside any window [start, stop)."""
    length = _check_int("length", length, 0)
    labels = np.zeros(length, dtype=bool)
    for start, stop in _check_windows(windows, length):
        labels[start:stop] = True
    return labels


def shingle_windows(windows: Sequence[Sequence[int]], shingle_size: int, length: int) -> list[tuple[int, int]]:
    """Windows of a series of `length` points, moved to shingle indices: shingle i covers points
    i .. i + shingle_size - 1 and is anomalous when it holds any anomalous point."""
    size = _check_int("shingle_size", shingle_size, 1)
    length = _check_int("length", length, 1)
    if size > length:
        raise ValueError(f"shingle_size: {size} exceeds the series length {length}")
    count = length - size + 1
    out = []
    for start, stop in _check_windows(windows, length):
        first, last = max(0, start - size + 1), min(count, stop)
        if first < last:
            out.append((first, last))
    return out


# ----------------------------------------------------------------------------------------------
# Files: NAB and plain CSV
# ----------------------------------------------------------------------------------------------
def _parse_time(text: str, where: str) -> np.datetime64:
    try:
        return np.datetime64(text.strip().replace(" ", "T"), "s")
    except ValueError as err:
        raise ValueError(f"{where}: cannot read {text!r} as a timestamp (expected e.g. 2014-07-01 00:00:00)") from err


def _read_table(path: Path, columns: Sequence[str], timestamp_column: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: the file is empty (expected a header line such as 'timestamp,value')")
        header = [h.strip() for h in header]
        missing = [c for c in [*columns, *([timestamp_column] if timestamp_column else [])] if c not in header]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r}; the columns are {header}")
        value_idx = [header.index(c) for c in columns]
        time_idx = header.index(timestamp_column) if timestamp_column else None
        values, times = [], []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {line_no}: expected {len(header)} fields, got {len(row)}")
            try:
                values.append([float(row[i]) for i in value_idx])
            except ValueError as err:
                raise ValueError(f"{path}, line {line_no}: {err}") from err
            if time_idx is not None:
                times.append(_parse_time(row[time_idx], f"{path}, line {line_no}"))
    if not values:
        raise ValueError(f"{path}: no data rows after the header")
    array = np.array(values, dtype=np.float64)
    if not np.isfinite(array).all():
        bad = int(np.argwhere(~np.isfinite(array))[0][0])
        raise ValueError(f"{path}: non-finite value on data row {bad + 1}")
    return array, (np.array(times, dtype="datetime64[s]") if time_idx is not None else None)


def load_csv(
    path: str | Path,
    value_column: str | Sequence[str] = "value",
    timestamp_column: str | None = "auto",
) -> Stream:
    """Any CSV with a header: `value_column` (one name, or several for a multivariate series) and
    an optional `timestamp_column` ("auto": a column named "timestamp" if there is one; None: the row
    number is the time). Unlabelled."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data_path: {str(path)!r} is not a file")
    columns = [value_column] if isinstance(value_column, str) else list(value_column)
    if not columns or not all(isinstance(c, str) and c for c in columns):
        raise ValueError(f"value_column: expected a column name or a list of names, got {value_column!r}")
    if timestamp_column == "auto":
        with path.open(newline="") as handle:
            header = [h.strip() for h in next(csv.reader(handle), [])]
        timestamp_column = "timestamp" if "timestamp" in header else None
    values, times = _read_table(path, columns, timestamp_column)
    if times is None:
        times = np.datetime64("1970-01-01T00:00:00") + np.arange(len(values)).astype("timedelta64[s]")
    elif np.any(np.diff(times.astype(np.int64)) < 0):
        raise ValueError(f"{path}: timestamps must be in increasing order")
    return Stream(values=values[:, 0] if len(columns) == 1 else values, timestamps=times, windows=[], kinds=[],
                  labelled=False, name=path.stem)


def _nab_key(labels: dict, csv_path: Path) -> str | None:
    for key in labels:
        if Path(key).name == csv_path.name:
            return key
    return None


def load_nab(csv_path: str | Path, labels_path: str | Path | None = None) -> Stream:
    """A NAB data file (`timestamp,value`) and its anomaly windows from NAB's label JSON
    (`combined_windows.json`: {"realKnownCause/nyc_taxi.csv": [["start", "end"], ...], ...}).

    Without `labels_path`, `combined_windows.json` is looked for beside the CSV and in NAB's own
    layout (data/<category>/<file>.csv with labels/ two levels up); if none is found the stream is
    unlabelled. Windows are converted to index ranges (both ends inclusive in NAB, so stop = end + 1).
    """
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"data_path: {str(csv_path)!r} is not a file; download a NAB file, e.g. {NAB_URL}/data/{NAB_FILES['nyc_taxi']}"
        )
    stream = load_csv(csv_path, "value", "timestamp")
    if labels_path is None:
        candidates = [csv_path.parent / "combined_windows.json", csv_path.parent.parent.parent / NAB_LABELS]
        labels_path = next((c for c in candidates if c.is_file()), None)
        if labels_path is None:
            return stream
    labels_path = Path(labels_path).expanduser()
    if not labels_path.is_file():
        raise FileNotFoundError(f"labels_path: {str(labels_path)!r} is not a file; NAB's labels are at {NAB_URL}/{NAB_LABELS}")
    try:
        labels = json.loads(labels_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"labels_path: {labels_path} is not valid JSON ({err})") from err
    if not isinstance(labels, dict):
        raise ValueError(f"labels_path: expected a JSON object mapping data files to windows, got {type(labels).__name__}")
    key = _nab_key(labels, csv_path)
    if key is None:
        raise ValueError(f"labels_path: {labels_path} has no windows for {csv_path.name}; it lists {sorted(labels)[:5]}...")
    times = stream.timestamps
    windows = []
    for i, pair in enumerate(labels[key]):
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValueError(f"labels_path: window {i} of {key} should be [start, end], got {pair!r}")
        where = f"labels_path: window {i} of {key}"
        start = int(np.searchsorted(times, _parse_time(pair[0].split(".")[0], where), side="left"))
        stop = int(np.searchsorted(times, _parse_time(pair[1].split(".")[0], where), side="right"))
        if start < stop:
            windows.append((start, stop))
    steps = np.diff(times[:50].astype(np.int64))
    per_day = int(round(86400 / np.median(steps))) if steps.size and np.median(steps) > 0 else None
    return Stream(values=stream.values, timestamps=times, windows=windows, kinds=["labelled"] * len(windows),
                  labelled=True, name=csv_path.stem, points_per_day=per_day)


def fetch_nab(name: str = "nyc_taxi", data_dir: str | Path = "data/nab", timeout: float = 30.0) -> tuple[Path, Path]:
    """Paths of a NAB file and NAB's label JSON under `data_dir`, downloading them from GitHub when
    missing. Offline, fails with what to download and where to put it."""
    if name not in NAB_FILES:
        raise ValueError(f"name: expected one of {sorted(NAB_FILES)}, got {name!r}")
    data_dir = Path(data_dir).expanduser()
    targets = [(f"{NAB_URL}/data/{NAB_FILES[name]}", data_dir / f"{name}.csv"), (f"{NAB_URL}/{NAB_LABELS}", data_dir / "combined_windows.json")]
    for url, target in targets:
        if target.is_file():
            continue
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError) as err:
            listing = "\n".join(f"  {u}\n    -> {t}" for u, t in targets)
            raise RuntimeError(
                f"could not download {url} ({err}). Download these files by hand and place them as shown, "
                f"then run again (or pass data_path to your copy of the CSV):\n{listing}"
            ) from err
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)
    return targets[0][1], targets[1][1]
