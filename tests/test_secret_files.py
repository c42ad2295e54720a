"""kept_secret: made once, kept (0600), an empty leftover replaced, the first writer wins."""

from videogen.secret_files import kept_secret


def test_made_once_kept_and_private(tmp_path):
    path = tmp_path / "home" / "a-secret"
    first = kept_secret(path)
    assert len(first) == 64 and kept_secret(path, lambda: "other") == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["a-secret"]  # no draft left behind


def test_an_empty_file_left_by_a_killed_process_is_replaced(tmp_path):
    path = tmp_path / "a-secret"
    path.write_text("")
    assert kept_secret(path, lambda: "fresh") == "fresh"


def test_a_secret_another_process_wrote_meanwhile_wins(tmp_path, monkeypatch):
    path = tmp_path / "a-secret"

    def racing_maker() -> str:
        path.write_text("theirs")  # lands between our check and our write
        return "ours"

    assert kept_secret(path, racing_maker) == "theirs"
