"""labkit.settings: every LABKIT_* variable is checked where it is read; a bad value names the
variable, the value and the fix, and nothing else ever escapes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings as hypothesis_settings
from hypothesis import strategies as st

from labkit import settings
from labkit.settings import SettingError

READERS = {"LABKIT_WORKERS": settings.workers, "LABKIT_IDLE_SECONDS": settings.idle_seconds,
           "LABKIT_PROFILE": settings.profile, "LABKIT_REQUIRE_CACHED": settings.require_cached,
           "LABKIT_PROGRESS": settings.progress}


@pytest.mark.parametrize("variable, value, fix", [
    ("LABKIT_WORKERS", "abc", "unset it"), ("LABKIT_WORKERS", "0", "unset it"), ("LABKIT_WORKERS", "-2", "unset it"),
    ("LABKIT_WORKERS", "1.5", "unset it"), ("LABKIT_WORKERS", "²", "unset it"),
    ("LABKIT_IDLE_SECONDS", "-1", "60 s"), ("LABKIT_IDLE_SECONDS", "soon", "60 s"),
    ("LABKIT_IDLE_SECONDS", "nan", "60 s"), ("LABKIT_IDLE_SECONDS", "inf", "60 s"),
    ("LABKIT_PROFILE", "x", "full, quick"), ("LABKIT_PROFILE", "Quick", "full, quick"),
    ("LABKIT_REQUIRE_CACHED", "maybe", "1 or 0"), ("LABKIT_PROGRESS", "loud", "1 or 0"),
])
def test_a_bad_value_names_the_variable_the_value_and_the_fix(monkeypatch, variable, value, fix, figures):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingError) as error:
        READERS[variable]()
    assert f"{variable}={value!r}" in str(error.value) and fix in str(error.value)
    figures.add(inputs=1)


def test_good_values(monkeypatch):
    for value, expected in (("3", 3), (" 2 ", 2)):
        monkeypatch.setenv("LABKIT_WORKERS", value)
        assert settings.workers() == expected
    monkeypatch.delenv("LABKIT_WORKERS")
    assert settings.workers() == len(os.sched_getaffinity(0))
    for value, expected in (("0", 0.0), ("2.5", 2.5), ("", 60.0)):
        monkeypatch.setenv("LABKIT_IDLE_SECONDS", value)
        assert settings.idle_seconds() == expected
    for value, expected in (("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False), ("", False)):
        monkeypatch.setenv("LABKIT_REQUIRE_CACHED", value)
        assert settings.require_cached() is expected


def test_the_profile_comes_from_labkit_then_quarto(monkeypatch, tmp_path):
    monkeypatch.delenv("LABKIT_PROFILE", raising=False)
    monkeypatch.setenv("QUARTO_PROFILE", "pdf,quick")
    assert settings.profile() == "quick" and settings.choose(full=20, quick=3) == 3
    monkeypatch.setenv("LABKIT_PROFILE", "full")
    assert settings.profile() == "full" and settings.store_dir().name == "full"
    monkeypatch.setenv("LABKIT_RUNS_DIR", str(tmp_path))
    assert settings.store_dir("quick") == tmp_path / "quick"
    with pytest.raises(ValueError, match="'draft'"):
        settings.store_dir("draft")


@hypothesis_settings(max_examples=200, deadline=None)
@given(variable=st.sampled_from(sorted(READERS)), value=st.text(max_size=6).filter(lambda v: "\x00" not in v))
def test_any_text_is_read_or_refused_by_name(variable, value):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(variable, value)
        try:
            READERS[variable]()
        except SettingError as error:
            assert variable in str(error)


def test_a_relative_cache_dir_is_stripped_and_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABKIT_CACHE_DIR", " caches ")
    assert settings.cache_dir("data") == tmp_path.resolve() / "caches" / "data"


def test_the_docstring_lists_every_variable_labkit_reads():
    sources = "".join(path.read_text() for path in Path(settings.__file__).parent.glob("*.py"))
    for variable in set(re.findall(r"LABKIT_[A-Z_]+", sources)):
        assert f"``{variable}``" in settings.__doc__, variable
