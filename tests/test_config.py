"""Node config: documented defaults, validation with one-line errors, rendering."""

import tomllib

import pytest

from node.config import (
    ConfigError,
    config_from_dict,
    default_config_text,
    load_config,
    render_config,
)


def test_every_default_is_documented_with_a_comment():
    lines = default_config_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            # the line above a key is its comment, or another key of the same comment group
            above = lines[i - 1]
            assert above.startswith("#") or ("=" in above and not above.startswith("#")), line


def test_defaults_load():
    config = config_from_dict({})
    assert config.get("rpc", "listen") == "127.0.0.1:26657"
    assert config.get("storage", "backend") == "leveldb"


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"rpc": {"listen": "nohost"}}, "[rpc] listen"),
        ({"rpc": {"lissten": "x"}}, "unknown key 'lissten'"),
        ({"bogus": {}}, "unknown section [bogus]"),
        ({"rpc": 5}, "must be a table"),
        ({"mempool": {"max_txs": -1}}, "must not be negative"),
        ({"mempool": {"max_txs": "10"}}, "expected an integer"),
        ({"node": {"log_level": "loud"}}, "must be one of"),
        ({"storage": {"compression": "zstd"}}, "must be one of"),
        ({"p2p": {"seeds": [1]}}, "list of strings"),
        ({"rpc": {"listen": 5}}, "expected str"),
        ({"node": {"verify_threads": 2, "verify_workers": 1}}, "both 'verify_threads'"),
    ],
)
def test_bad_values_are_refused_with_one_line(data, fragment):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_a_renamed_key_is_read_under_its_new_name():
    data = {"node": {"verify_threads": 3}}
    assert config_from_dict(data).get("node", "verify_workers") == 3
    assert data == {"node": {"verify_threads": 3}}  # the caller's dict is left as it was
    with pytest.raises(ConfigError, match="expected an integer"):
        config_from_dict({"node": {"verify_threads": "3"}})


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[rpc\nlisten=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError):
        load_config(bad)


def test_render_keeps_comments_and_overrides(tmp_path):
    text = render_config({("rpc", "listen"): "127.0.0.1:5555", ("p2p", "seeds"): ["a@b:1"]})
    assert "# Largest request body accepted." in text
    data = tomllib.loads(text)
    assert data["rpc"]["listen"] == "127.0.0.1:5555"
    assert data["p2p"]["seeds"] == ["a@b:1"]
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert load_config(path).get("rpc", "listen") == "127.0.0.1:5555"
    with pytest.raises(ConfigError):
        render_config({("rpc", "listen"): "bad"})


def test_storage_compression_reaches_leveldb_as_its_option():
    from node.node import leveldb_options

    assert config_from_dict({}).get("storage", "compression") == "none"
    assert leveldb_options(config_from_dict({}))["compression"] is None
    snappy = config_from_dict({"storage": {"compression": "snappy"}})
    assert leveldb_options(snappy) == {"cache_bytes": 67108864, "compression": "snappy"}
