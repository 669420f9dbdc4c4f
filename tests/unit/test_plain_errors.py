"""Library and CLI errors are plain text: delta-rs's error chains lose their terminal colour codes."""

from __future__ import annotations

import pytest

from deltaflow.config import resolve_location
from deltaflow.errors import InvalidArgument


def test_plain_text_strips_colour_codes_and_joins_the_cause_chain() -> None:
    from deltaflow.store.factory import plain_text

    raw = OSError("Operation not supported\n  \x1b[31m↳\x1b[0m an error occurred while loading credentials\n"
                  "   \x1b[31m↳\x1b[0m failed to load IMDS session token:\n")
    assert plain_text(raw) == ("Operation not supported: an error occurred while loading credentials: "
                               "failed to load IMDS session token")
    assert plain_text(OSError()) == "OSError"
    with_backtrace = Exception("Kernel error: Json error: bad literal\n   0: <unknown>\n  12: start_thread\n"
                               "             at ./nptl/pthread_create.c:442:8\n")
    assert plain_text(with_backtrace) == "Kernel error: Json error: bad literal"


def test_a_store_path_that_is_a_file_is_refused(tmp_path) -> None:
    from deltaflow.store.factory import check_store_path, get_store, store_exists

    afile = tmp_path / "readme.txt"
    afile.write_text("x")
    for path, fragment in ((afile, "is a file"), (afile / "store", "lies under")):
        with pytest.raises(InvalidArgument, match=fragment):
            check_store_path(resolve_location(str(path)))
        with pytest.raises(InvalidArgument, match=fragment):
            get_store(str(path), engine="rust")
    assert not store_exists(resolve_location(str(tmp_path / "nothing-here")))
    assert not (tmp_path / "nothing-here").exists()
