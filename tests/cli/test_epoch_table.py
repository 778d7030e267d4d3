"""training/epoch_table.py: history.csv rows, milestones, the page block."""

import pathlib

import pytest

from tests.conftest import load_script

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
epoch_table = load_script(REPO_ROOT / "training" / "epoch_table.py", "epoch_table_cli")

HEADER = "epoch,accuracy,loss,val_accuracy,val_loss,learning_rate,epoch_seconds\n"


def _history(path, rows):
    path.write_text(HEADER + "".join(f"{e},0.5,1.0,{acc},1.0,0.1,{s}\n" for e, acc, s in rows))
    return path


def test_rows_are_numbered_from_one_and_a_resumed_epoch_keeps_its_last_row(tmp_path):
    # Epoch 1 (0 in the file) written twice: an interrupted first attempt, then the resumed one.
    path = _history(tmp_path / "h.csv", [(0, 0.40, 100.0), (0, 0.45, 120.0), (1, 0.6, 90.5)])
    assert epoch_table.read_history(path) == [(1, 0.45, 120.0), (2, 0.6, 90.5)]


def test_milestones_count_the_seconds_of_the_epochs_up_to_the_first_one_reaching_them(tmp_path):
    rows = [(1, 0.70, 100.0), (2, 0.81, 110.0), (3, 0.79, 120.0), (4, 0.86, 130.0)]
    # 80%: epoch 2 after 100 + 110 s; 85%: epoch 4 after 100 + 110 + 120 + 130 s; 90%: never.
    assert epoch_table.first_reaching(rows, 0.8) == (2, 210.0)
    assert epoch_table.first_reaching(rows, 0.85) == (4, 460.0)
    assert epoch_table.first_reaching(rows, 0.9) is None
    # Reaching a level exactly counts.
    assert epoch_table.first_reaching(rows, 0.86) == (4, 460.0)


def test_the_table_puts_both_runs_side_by_side_with_their_sums():
    first = [(1, 0.5, 100.4), (2, 0.9, 99.6)]
    second = [(1, 0.4, 80.0), (2, 0.7, 81.0), (3, 0.8, 79.0)]
    text = epoch_table.markdown([first, second], ["att", "vgg"], [0.8, 0.9])
    assert text.splitlines() == [
        "| epoch | att: val. accuracy (%) | seconds | vgg: val. accuracy (%) | seconds |",
        "| --- | --- | --- | --- | --- |",
        "| 1 | 50.0 | 100 | 40.0 | 80 |",
        "| 2 | 90.0 | 100 | 70.0 | 81 |",
        "| 3 |  |  | 80.0 | 79 |",
        "| sum of epochs |  | 200 |  | 240 |",
        "",
        "- att: first 80.0% at epoch 2 (200 s), 90.0% at epoch 2 (200 s); best 90.0%, last 90.0% (epoch 2).",
        "- vgg: first 80.0% at epoch 3 (240 s), 90.0% never; best 80.0%, last 80.0% (epoch 3).",
    ]


def test_a_file_without_the_columns_is_refused_by_name(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,accuracy\n0,0.5\n")
    with pytest.raises(ValueError, match=r"metrics\.csv: no column 'val_accuracy', 'epoch_seconds'"):
        epoch_table.read_history(path)
    (tmp_path / "empty.csv").write_text(HEADER)
    with pytest.raises(ValueError, match=r"empty\.csv: no epochs"):
        epoch_table.read_history(tmp_path / "empty.csv")
    (tmp_path / "bad.csv").write_text(HEADER + "0,0.5,1,n/a,1,0.1,10\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 2: not a number"):
        epoch_table.read_history(tmp_path / "bad.csv")


def test_the_page_block_is_replaced_and_the_rest_kept(tmp_path, capsys):
    a = _history(tmp_path / "a.csv", [(0, 0.5, 10.0)])
    b = _history(tmp_path / "b.csv", [(0, 0.6, 20.0)])
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n<!-- epochs-x:start -->\nold\n<!-- epochs-x:end -->\n\nAfter.\n")
    argv = [str(a), str(b), "--names", "A", "B", "--page", str(page), "--block", "epochs-x"]
    assert epoch_table.main(argv) == 0
    text = page.read_text()
    assert text.startswith("# Title\n\n<!-- epochs-x:start -->\n<!-- Written by `python training/epoch_table.py ")
    assert text.endswith("<!-- epochs-x:end -->\n\nAfter.\n")
    assert "old" not in text
    assert "| 1 | 50.0 | 10 | 60.0 | 20 |" in text
    # A second run finds its markers again and writes the same page.
    assert epoch_table.main(argv) == 0
    assert page.read_text() == text


def test_a_page_without_the_markers_is_left_as_it_was(tmp_path, capsys):
    a = _history(tmp_path / "a.csv", [(0, 0.5, 10.0)])
    page = tmp_path / "page.md"
    page.write_text("no markers here\n")
    assert epoch_table.main([str(a), "--page", str(page), "--block", "epochs-x"]) == 2
    assert page.read_text() == "no markers here\n"
    assert "epochs-x" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["a.csv", "--milestones", "90"], "fractions in (0, 1]"),
    (["a.csv", "b.csv", "--names", "only-one"], "1 name(s) for 2 history file(s)"),
])
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit):
        epoch_table.parse_args(argv)
    assert message in capsys.readouterr().err
