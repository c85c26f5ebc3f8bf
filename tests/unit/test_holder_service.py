"""HolderService: once deregistered (SIGTERM), nothing registers the node again -- a
reconcile racing the shutdown (a watch POST, the scrub) must not leave a registration
whose check goes critical when the process is gone."""

from tuggle_agent.consul.agent import HolderService


class FakeAgent:
    """The py-consul calls HolderService makes, recorded."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.service = self

    def register(self, name, **kwargs):
        self.calls.append(("register", tuple(kwargs["tags"])))

    def deregister(self, service_id):
        self.calls.append(("deregister", service_id))

    def services(self):
        return {}  # as after a deregistration: our service is gone


class FakeClient:
    def __init__(self):
        self.agent = FakeAgent()


def test_nothing_registers_the_service_again_after_deregister():
    client = FakeClient()
    svc = HolderService(client, "tuggle", 8900, None, 1.0, 1.0)
    svc.register({"a"})
    svc.deregister()
    svc.add("b")
    svc.remove("a")
    svc.register({"c"})
    assert svc.ensure_registered() is False
    assert client.agent.calls == [("register", ("a",)), ("deregister", "tuggle")]
