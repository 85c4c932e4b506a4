"""Write MV values to a plant over OPC-UA: the loop's :class:`~twin.loop.ports.MoveWriter`.

    plant = OpcUaMoveWriter("opc.tcp://127.0.0.1:4840/cstr", security)
    await plant.open(timeout_s=4.0)
    measured = await plant.read_measured(spec.mvs)       # {"Tc": 300.02}
    results = await plant.write([(spec.tag("Tc"), 300.4)])
    await plant.close()

The session is opened by :func:`connectors.opcua_security.connect_client` with the collector's
:class:`~connectors.opcua_security.Security`; :attr:`OpcUaMoveWriter.connected` turns False
once the server or the network drops it, and :meth:`~OpcUaMoveWriter.open` opens a new one
(``twin.loop.writer.LoopWriter`` does so at the next step). Values are written in each node's
own data type (servers answer ``BadTypeMismatch`` otherwise), all in one Write request, and
read back in one Read request.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState

from connectors.opcua_security import Security, connect_client
from twin.errors import ConnectorError, TwinError
from twin.loop.ports import WriteResult
from twin.spec import Tag

log = logging.getLogger(__name__)


def _variant(value: float, vtype: ua.VariantType) -> ua.Variant:
    """``value`` as the node's exact data type (servers answer BadTypeMismatch otherwise)."""
    if vtype in (ua.VariantType.Double, ua.VariantType.Float):
        return ua.Variant(float(value), vtype)
    if vtype.name.startswith(("Int", "UInt", "Byte", "SByte")):
        return ua.Variant(round(value), vtype)
    # TwinError, not ConnectorError: the write-back's audit names the type ("write failed:
    # TwinError: ...") as it always has
    raise TwinError(f"cannot write a number to a node of data type {vtype.name}")


class OpcUaMoveWriter:
    """One OPC-UA session for the guarded write-back: read the measured MVs, write, read back."""

    def __init__(
        self, endpoint: str, security: Security | None = None, *, client: Client | None = None
    ) -> None:
        self._endpoint = endpoint
        self.security = security or Security()
        self._client = client
        self._namespaces: list[str] | None = None

    @classmethod
    def over(cls, client: Client) -> OpcUaMoveWriter:
        """A writer over a client connected elsewhere (whoever connected it disconnects it)."""
        return cls(client.server_url.geturl(), client=client)

    @property
    def endpoint(self) -> str:
        """The server's URL."""
        return self._endpoint

    @property
    def connected(self) -> bool:
        """True while the session is open and the client still connected."""
        return self._client is not None and self._client.uaclient.state is UaClientState.CONNECTED

    async def open(self, timeout_s: float) -> None:
        """Open a new session (ConnectorError saying why when the server refuses it)."""
        self._client, self._namespaces = None, None
        self._client = await connect_client(self._endpoint, self.security, timeout_s=timeout_s)

    async def close(self) -> None:
        """Disconnect (nothing to do without a session)."""
        client, self._client, self._namespaces = self._client, None, None
        if client is not None:
            await client.disconnect()

    def _session(self) -> Client:
        if self._client is None:
            raise ConnectorError(f"no OPC-UA session to {self._endpoint}: open one first")
        return self._client

    async def read_measured(self, tags: Sequence[Tag]) -> dict[str, float]:
        """The measured values of ``tags`` (their ``node``) now: good, finite readings only.

        Reads the server's NamespaceArray too; :meth:`write` resolves its nodes with it.
        """
        client = self._session()
        namespaces = self._namespaces = await client.get_namespace_array()
        readable, nodes = [], []
        for t in tags:  # a tag without a node has no measurement to read (an offline spec)
            if t.node is not None:
                readable.append(t)
                nodes.append(client.get_node(t.node.resolve(namespaces)))
        out = {}
        for tag, dv in zip(readable, await client.read_attributes(nodes), strict=True):
            raw = dv.Value.Value if dv.Value is not None else None
            good = dv.StatusCode is None or dv.StatusCode.is_good()
            if good and isinstance(raw, int | float) and math.isfinite(raw):
                out[tag.name] = float(raw)
        return out

    async def write(self, moves: Sequence[tuple[Tag, float]]) -> list[WriteResult]:
        """Write each value to its tag's ``write_node`` in one request, then read each back."""
        client = self._session()
        namespaces = self._namespaces or await client.get_namespace_array()
        nodes = []
        for tag, _ in moves:
            if tag.write_node is None:
                raise ConnectorError(f"{tag.name}: the spec gives it no write node")
            nodes.append(client.get_node(tag.write_node.resolve(namespaces)))
        variants = [
            _variant(value, await node.read_data_type_as_variant_type())
            for (_, value), node in zip(moves, nodes, strict=True)
        ]
        statuses = await client.write_values(nodes, variants, raise_on_partial_error=False)
        readback = await client.read_attributes(nodes)
        out = []
        for (tag, _), variant, status, dv in zip(moves, variants, statuses, readback, strict=True):
            value = float(variant.Value)
            single = variant.VariantType == ua.VariantType.Float
            out.append(
                WriteResult(
                    tag=tag.name,
                    value=value,
                    refused=None if status.is_good() else status.name,
                    readback=dv.Value.Value if dv.Value is not None else None,
                    precision=1e-6 * abs(value) if single else 0.0,
                )
            )
        return out
