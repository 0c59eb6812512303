"""Review findings of session 15 on `aftercare import` and `aftercare erase`, on the
local stack (moto).

- two oversized CSV cells in a row no longer end the import early (it said
  "complete" with the rows after them never read);
- a quote left open swallowed the rest of the file into one cell, silently: now a
  rejected row, from the line it starts on;
- a column named twice is refused; a column not read gets a warning (a misspelt
  "Total" imported totals of 0 silently); spaces after a header's commas are dropped;
- JSONL nulls are empty cells (a null consent rejected the row);
- a bad --checkpoint (missing folder, a folder) and a folder or pipe as the file are
  one line, not a traceback; a checkpoint edited by hand starts from the top;
- `erase --file` reads "shop#1" as the id "shop#1" (it erased customer "shop"), and
  an id with spaces, which ingest accepts, can be erased.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chalicelib.cli.main import main
from chalicelib.local.stack import LocalStack
from chalicelib.store.models import CustomerModel


def _profile(cid: str) -> dict[str, object]:
    return dict(CustomerModel.get(cid).profile)


def _exists(cid: str) -> bool:
    try:
        return bool(CustomerModel.get(cid).profile.get("id"))
    except CustomerModel.DoesNotExist:
        return False


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_two_oversized_cells_in_a_row_do_not_end_the_import(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = "x" * 200_000
    path = tmp_path / "c.csv"
    path.write_text(f"id,name\nc1,Ann\nc2,{big}\nc3,{big}\nc4,Dee\nc5,Eve\n")
    code, out, err = _run(["import", "customers", str(path)], capsys)
    assert code == 1
    assert "5 rows: 3 imported" in out and "2 rejected" in out and "complete" in out
    assert f"{path}: line 3: unreadable CSV row" in err
    assert f"{path}: line 4: unreadable CSV row" in err
    assert [_exists(c) for c in ("c1", "c2", "c3", "c4", "c5")] == [
        True, False, False, True, True]
    # The line numbers after them are right too.
    assert "line 5" not in err and "line 6" not in err


def test_a_quote_left_open_is_a_rejected_row_from_its_first_line(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "q.csv"
    path.write_text('id,name\nc0,Zoe\nc1,"Ann\nc2,Bob\nc3,Cy\n')
    code, out, err = _run(["import", "customers", str(path)], capsys)
    assert code == 1 and "1 imported" in out and "1 rejected" in out
    assert f"{path}: line 3: unreadable CSV row: a quote is not closed" in err
    assert _exists("c0") and not _exists("c1")


def test_a_character_after_a_closing_quote_is_refused(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "q.csv"
    path.write_text('id,name\nc1,"Ann"x\nc2,"Bo""b"\n')
    code, _, err = _run(["import", "customers", str(path)], capsys)
    assert code == 1
    assert f"{path}: line 2: unreadable CSV row: a character after a closing quote" in err
    assert not _exists("c1") and _profile("c2")["name"] == 'Bo"b'


def test_a_column_named_twice_is_refused_before_any_row(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.csv"
    path.write_text("id,email,email\nc4,ana@example.com,\n")
    code, out, err = _run(["import", "customers", str(path)], capsys)
    assert code == 1 and out == ""
    assert err.strip() == (f"{path}: line 1: column 'email' more than once: which one to "
                           "read is unknown (nothing imported)")
    assert not _exists("c4")


@pytest.mark.parametrize(("header", "words"), [
    ('id,"email"x', "a character after a closing quote"),
    ('id,"email', "a quote is not closed"),
    ("id," + "n" * 200_000, "field larger than field limit"),
])
def test_a_header_csv_cannot_read_is_one_line(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        header: str, words: str) -> None:
    path = tmp_path / "h.csv"
    path.write_text(f"{header}\nc1,ana@example.com\n")
    code, out, err = _run(["import", "customers", str(path)], capsys)
    assert code == 1 and out == ""
    assert err.startswith(f"{path}: line 1: unreadable CSV header: ") and words in err
    assert err.count("\n") == 1 and "(nothing imported)" in err
    assert not _exists("c1")


def test_columns_not_read_are_named_and_spaces_in_the_header_dropped(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customers = tmp_path / "c.csv"
    customers.write_text("id, email, Phone,attr_tier\nc1,ana@example.com,+14155550100,gold\n")
    code, _, err = _run(["import", "customers", str(customers)], capsys)
    assert code == 0
    assert err.strip() == (f"{customers}: warning: column 'Phone' is not read "
                           "(did you mean 'phone'?)")
    profile = _profile("c1")
    assert profile["email"] == "ana@example.com" and "phone" not in profile
    assert profile["attributes"] == {"tier": "gold"}
    orders = tmp_path / "o.jsonl"
    orders.write_text("\n".join(json.dumps(
        {"order_id": f"o{i}", "customer_id": "c1", "placed_at": "2026-03-01T10:00:00Z",
         "Total": 10, "amount": 3}) for i in range(3)) + "\n")
    code, _, err = _run(["import", "orders", str(orders)], capsys)
    assert code == 0
    # Once each, not once per row.
    assert err.count("warning") == 2
    assert "column 'Total' is not read (did you mean 'total'?)" in err
    assert "column 'amount' is not read\n" in err


def test_jsonl_nulls_are_empty_cells(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customers = tmp_path / "c.jsonl"
    customers.write_text(json.dumps({"id": "c1", "consent_sms": None, "email": None}) + "\n")
    orders = tmp_path / "o.jsonl"
    orders.write_text(json.dumps({"order_id": "o1", "customer_id": "c1",
                                  "placed_at": "2026-03-01T10:00:00Z", "total": None}) + "\n")
    assert _run(["import", "customers", str(customers)], capsys)[0] == 0
    assert _run(["import", "orders", str(orders)], capsys)[0] == 0
    assert _profile("c1")["order_count"] == 1


def test_bad_paths_are_one_line(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "c.jsonl"
    rows.write_text(json.dumps({"id": "c1"}) + "\n")
    cases = [
        (["import", "customers", str(tmp_path)], f"{tmp_path}: is a folder"),
        (["import", "customers", "/dev/null"], "/dev/null: not a regular file"),
        (["import", "customers", str(rows), "--checkpoint", str(tmp_path / "no" / "cp")],
         f"{tmp_path / 'no' / 'cp'}: --checkpoint: no such folder"),
        (["import", "customers", str(rows), "--checkpoint", str(tmp_path)],
         f"{tmp_path}: --checkpoint is a folder"),
    ]
    for args, message in cases:
        code, _, err = _run(args, capsys)
        assert code == 1 and message in err and "Traceback" not in err, (args, err)
    assert not _exists("c1")


@pytest.mark.parametrize("state", [{"line": "abc"}, {"line": 5, "rejected_bytes": None},
                                   {"line": 2, "rejected_bytes": "x"}, {"line": 2.5}])
def test_a_checkpoint_edited_by_hand_starts_from_the_top(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        state: object) -> None:
    rows = tmp_path / "c.jsonl"
    rows.write_text("".join(json.dumps({"id": f"c{i}"}) + "\n" for i in range(3)))
    checkpoint = tmp_path / "c.jsonl.checkpoint"
    checkpoint.write_text(json.dumps(state))
    code, out, _ = _run(["import", "customers", str(rows)], capsys)
    assert code == 0 and "3 rows: 3 imported" in out
    assert not checkpoint.exists()


def test_erase_file_ids_with_hash_and_spaces(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "c.jsonl"
    ids = ["shop", "shop#1", "Ana Smith", "keep"]
    rows.write_text("".join(json.dumps({"id": cid, "email": f"{i}@example.com"}) + "\n"
                            for i, cid in enumerate(ids)))
    assert _run(["import", "customers", str(rows)], capsys)[0] == 0
    listing = tmp_path / "ids.txt"
    listing.write_text('# customers who asked\nshop#1   # ticket 12\n  "Ana Smith" # 13\n')
    code, out, err = _run(["erase", "--file", str(listing)], capsys)
    assert code == 0, err
    assert "erased 2 customers (0 unknown ids" in out
    assert [_exists(c) for c in ids] == [True, False, False, True]
    assert "email" not in _profile("shop#1") and _profile("shop")["email"] == "0@example.com"
    # As arguments too.
    code, out, _ = _run(["erase", "keep", "shop"], capsys)
    assert code == 0 and "erased 2 customers" in out
    # Two ids on one line, or an id with spaces not quoted: refused, nothing erased.
    listing.write_text("c-1 c-2\n")
    code, _, err = _run(["erase", "--file", str(listing)], capsys)
    assert code == 1 and f'{listing}: line 1: one customer id per line (an id with spaces ' \
        'as a JSON string: "Ana Smith")' in err


@pytest.mark.parametrize(("argument", "message"), [
    ("", "an empty customer id"), ("   ", "an empty customer id"),
    ("x" * 513, "at most 512 characters"),
])
def test_erase_refuses_ids_no_event_carries(
        capsys: pytest.CaptureFixture[str], argument: str, message: str) -> None:
    code, _, err = _run(["erase", argument], capsys)
    assert code == 1 and message in err and "nothing erased" in err
