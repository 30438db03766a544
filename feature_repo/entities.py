"""Entities: who and what features describe."""

from feast import Entity, ValueType

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="a (pseudonymous) user")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING, description="a catalogue item")
