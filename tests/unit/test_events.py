"""Event payloads: what tuggle-agent puts in a Consul user event, and reads back."""

from tuggle_agent.objects.events import parse, payload
from tuggle_agent.objects.names import object_id


def test_event_payload_fits_consuls_100_byte_cap_for_any_valid_name():
    name = "a" * 255
    raw = payload("DELETE", "f" * 32, object_id(name))
    assert len(raw) < 100
    ev = parse({"ID": "x", "LTime": 3, "Payload": raw})
    assert (ev.verb, ev.version, ev.object_id) == ("DELETE", "f" * 32, object_id(name))
    assert parse({"ID": "x", "Payload": b"PUT:legacy-name"}) is None
