"""Merge rules for `extends:` and stack overrides, and the provenance they keep."""

from __future__ import annotations

from plinth.spec.load import load_blueprint_tree
from plinth.spec.yamltree import merge, to_plain


def test_maps_deep_merge_and_scalars_replace():
    assert merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"c": 3}, "d": 2}) == {"a": {"b": 1, "c": 3}, "d": 2}


def test_null_deletes_a_key():
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"b": None}}) == {"a": {"c": 2}}


def test_named_lists_merge_by_name_and_append_new_items():
    base = [{"name": "a", "x": 1, "y": 1}, {"name": "b", "x": 1}]
    over = [{"name": "b", "x": 2}, {"name": "c", "x": 3}]
    assert merge(base, over) == [{"name": "a", "x": 1, "y": 1}, {"name": "b", "x": 2}, {"name": "c", "x": 3}]


def test_delete_directive_removes_a_named_item():
    base = [{"name": "a"}, {"name": "b"}]
    assert merge(base, [{"name": "a", "$delete": True}]) == [{"name": "b"}]


def test_delete_directive_without_a_base_item_is_dropped():
    assert merge({}, {"teams": [{"name": "a", "$delete": True}, {"name": "b"}]}) == {"teams": [{"name": "b"}]}


def test_plain_lists_replace():
    assert merge({"groups": ["a", "b"]}, {"groups": ["c"]}) == {"groups": ["c"]}


def test_extends_chain_keeps_the_position_of_the_last_writer(write):
    write("base.yaml", """\
        metadata:
          name: base
          environment: dev
        teams:
          - name: a
            quota: {gpu: 1}
        """)
    child = write("child.yaml", """\
        extends: base.yaml
        teams:
          - name: a
            quota:
              gpu: 2
        """)
    tree = load_blueprint_tree(child)
    assert to_plain(tree) == {"metadata": {"name": "base", "environment": "dev"},
                              "teams": [{"name": "a", "quota": {"gpu": 2}}]}
    assert str(tree["metadata"].locs["name"]) == "base.yaml:2:3"
    assert str(tree["teams"][0]["quota"].locs["gpu"]) == "child.yaml:5:7"


def test_extension_keys_are_dropped(write):
    tree = load_blueprint_tree(write("a.yaml", "x-owner: me\nmetadata: {name: a, x-note: hi}\n"))
    assert to_plain(tree) == {"metadata": {"name": "a"}}
