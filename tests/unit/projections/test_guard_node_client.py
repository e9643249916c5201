"""The guards' per-master clients connect as the cluster client does: over TLS for a
``rediss+cluster://`` URL, with its credentials and certificates (they used to drop the
connection class and most TLS options, so every guard command of a TLS cluster failed)."""

from __future__ import annotations

from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import Connection, SSLConnection

from ledgerflow.projections.guards import node_client


def test_a_tls_node_gets_a_tls_client_with_its_options() -> None:
    node = ClusterNode(
        "127.0.0.1",
        7000,
        connection_class=SSLConnection,
        ssl_ca_certs="/etc/ca.pem",
        ssl_certfile="/etc/client.pem",
        ssl_keyfile="/etc/client.key",
        password="secret",
        socket_timeout=3,
    )
    connection = node_client(node).connection_pool.make_connection()
    assert isinstance(connection, SSLConnection)
    assert (connection.host, connection.port, connection.password) == ("127.0.0.1", 7000, "secret")
    assert connection.socket_timeout == 3


def test_a_plain_node_gets_a_plain_client() -> None:
    connection = node_client(ClusterNode("127.0.0.1", 7001)).connection_pool.make_connection()
    assert type(connection) is Connection and connection.port == 7001
