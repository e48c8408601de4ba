from tests.client.fixtures import isolated_home, online, server  # noqa: F401
