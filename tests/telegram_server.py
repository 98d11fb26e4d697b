"""A Telegram data centre on loopback for telethon's real client: MTProto 2.0 over TCP.

The client under test is telethon's own ``TelegramClient`` with its real network stack
(``ConnectionTcpFull`` over a loopback socket, MTProto encryption, message containers, RPC
results and errors); only the server is ours. It knows the session's authorization key, so no
key exchange happens: the session string :meth:`FakeTelegram.session_string` gives the client
points at this server and carries that key.

Behind the protocol sits :class:`World`, a small model of Telegram's state: users, basic groups
and supergroups, the account's common update sequence and one sequence per supergroup, chat
history, and the messages the client sent. Tests post and edit messages in it, make a request
answer ``FLOOD_WAIT_X`` or an unknown constructor, or cut the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any
from zlib import crc32

from telethon import utils
from telethon.crypto import AES, AuthKey
from telethon.extensions import BinaryReader
from telethon.network.mtprotostate import MTProtoState
from telethon.sessions import StringSession
from telethon.tl import functions, types
from telethon.tl.core import GzipPacked, MessageContainer

_WRAPPERS = (
    functions.InvokeWithLayerRequest,
    functions.InitConnectionRequest,
    functions.InvokeWithoutUpdatesRequest,
    functions.InvokeAfterMsgRequest,
)


class RpcFailure(Exception):  # noqa: N818 - it is what Telegram calls it
    """Answer a request with ``rpc_error`` (code, message) instead of a result."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Entry:
    """One update in a sequence: a new or edited message and the pts it got."""

    pts: int
    clock: int
    message: Any
    edit: bool = False


@dataclass
class World:
    """Telegram's state as far as the tests need it."""

    me: Any
    bot_token: str = "123:test-token"
    authorized: bool = True
    users: dict[int, Any] = field(default_factory=dict)
    chats: dict[int, Any] = field(default_factory=dict)
    common: list[Entry] = field(default_factory=list)
    channels: dict[int, list[Entry]] = field(default_factory=dict)
    history: dict[int, dict[int, Any]] = field(default_factory=dict)  # marked id -> id -> msg
    next_id: dict[int, int] = field(default_factory=dict)
    forgotten_below: dict[int | None, int] = field(default_factory=dict)
    clock: int = 1
    base: int = field(default_factory=lambda: int(time.time()) - 3600)
    common_pts: int = 100
    qts: int = 5
    slice_size: int = 1000
    sent: list[Any] = field(default_factory=list)
    random_ids: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.users[self.me.id] = self.me

    # The model -------------------------------------------------------------------------

    def add_user(self, user_id: int, first: str, username: str | None = None, **kw: Any) -> Any:
        user = types.User(
            user_id, access_hash=user_id * 7, first_name=first, username=username, **kw
        )
        self.users[user_id] = user
        return user

    def add_group(self, chat_id: int, title: str) -> Any:
        chat = types.Chat(chat_id, title, types.ChatPhotoEmpty(), 3, self.now(), 1)
        self.chats[chat_id] = chat
        return chat

    def add_supergroup(self, channel_id: int, title: str, username: str | None = None) -> Any:
        channel = types.Channel(
            channel_id,
            title,
            types.ChatPhotoEmpty(),
            self.now(),
            megagroup=True,
            access_hash=channel_id * 3,
            username=username,
        )
        self.chats[channel_id] = channel
        self.channels[channel_id] = []
        return channel

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.base + self.clock, UTC)

    def post(self, peer: Any, text: str = "", **fields: Any) -> Any:
        """A new message in ``peer``'s chat, in its sequence and history."""
        marked = _marked(peer)
        message_id = fields.pop("id", None) or self.next_id.get(marked, 1)
        self.next_id[marked] = max(self.next_id.get(marked, 1), message_id + 1)
        self.clock += 1
        fields.setdefault("date", self.now())
        message = types.Message(message_id, peer, message=text, **fields)
        self.history.setdefault(marked, {})[message_id] = message
        self._log(peer, message, edit=False)
        return message

    def edit(self, message: Any, text: str) -> Any:
        """The message edited: its history entry replaced, an edit update logged."""
        self.clock += 1
        message.message = text
        message.edit_date = self.now()
        self._log(message.peer_id, message, edit=True)
        return message

    def forget(self, channel_id: int | None) -> None:
        """Telegram drops a sequence's old updates: an older state gets ``...TooLong``."""
        current = self.common_pts if channel_id is None else self.channel_pts(channel_id)
        self.forgotten_below[channel_id] = current

    def _log(self, peer: Any, message: Any, *, edit: bool) -> None:
        if isinstance(peer, types.PeerChannel):
            log = self.channels[peer.channel_id]
            pts = (log[-1].pts if log else 10) + 1
            log.append(Entry(pts, self.clock, message, edit))
        else:
            self.common_pts += 1
            self.common.append(Entry(self.common_pts, self.clock, message, edit))

    def channel_pts(self, channel_id: int) -> int:
        log = self.channels[channel_id]
        return log[-1].pts if log else 10

    def state(self) -> Any:
        return types.updates.State(self.common_pts, self.qts, self.now(), 1, 0)


class FakeTelegram:
    """The loopback server: accepts telethon connections and answers from a :class:`World`."""

    def __init__(self, me: Any) -> None:
        self.world = World(me)
        self.auth_key = AuthKey(os.urandom(256))
        self.requests: list[Any] = []
        self.flood: dict[type, list[int]] = {}
        self.broken: dict[type, int] = {}
        self.cut_on: set[type] = set()
        self.delay_s: dict[type, float] = {}
        self.connections = 0
        self.failures: list[BaseException] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._msg_counter = 0
        self.handlers: dict[type, Callable[[Any], Any]] = _handlers(self)

    async def __aenter__(self) -> FakeTelegram:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def session_string(self) -> str:
        """A telethon StringSession for this server: data centre 2 at 127.0.0.1:port."""
        session = StringSession()
        session.set_dc(2, "127.0.0.1", self.port)
        session.auth_key = self.auth_key
        return str(session.save())

    def flood_next(self, request_type: type, seconds: int, times: int = 1) -> None:
        """The next ``times`` requests of ``request_type`` answer ``FLOOD_WAIT_<seconds>``."""
        self.flood.setdefault(request_type, []).extend([seconds] * times)

    def break_next(self, request_type: type, times: int = 1) -> None:
        """The next ``times`` answers to ``request_type`` hold a constructor nobody knows."""
        self.broken[request_type] = self.broken.get(request_type, 0) + times

    def calls(self, request_type: type) -> list[Any]:
        """The requests of ``request_type`` received so far (unwrapped)."""
        return [r for r in self.requests if isinstance(r, request_type)]

    def drop_connections(self) -> None:
        """Close every client connection now (a network failure)."""
        for writer in list(self._writers):
            writer.close()

    # The protocol ----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        send_counter = [0]
        try:
            while True:
                header = await reader.readexactly(8)
                length, _seq = struct.unpack("<ii", header)
                body = await reader.readexactly(length - 8)
                payload = body[:-4]
                await self._on_packet(payload, writer, send_counter)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as exc:  # a bug of this server: make it visible to the test
            self.failures.append(exc)
            raise
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _on_packet(
        self, payload: bytes, writer: asyncio.StreamWriter, counter: list[int]
    ) -> None:
        msg_key = payload[8:24]
        key, iv = MTProtoState._calc_key(self.auth_key.key, msg_key, True)
        plain = AES.decrypt_ige(payload[24:], key, iv)
        salt, session_id, msg_id, _seq_no, length = struct.unpack("<qqqii", plain[:32])
        reply = _Reply(self, writer, counter, salt, session_id)
        await self._on_message(msg_id, plain[32 : 32 + length], reply)

    async def _on_message(self, msg_id: int, body: bytes, reply: _Reply) -> None:
        obj = BinaryReader(body).tgread_object()
        if isinstance(obj, MessageContainer):
            for inner in obj.messages:
                await self._on_object(inner.msg_id, inner.obj, reply)
        else:
            await self._on_object(msg_id, obj, reply)

    async def _on_object(self, msg_id: int, obj: Any, reply: _Reply) -> None:
        if isinstance(obj, GzipPacked):
            obj = BinaryReader(obj.data).tgread_object()
        if isinstance(obj, types.MsgsAck):
            return
        if isinstance(obj, functions.PingRequest | functions.PingDelayDisconnectRequest):
            reply.send(bytes(types.Pong(msg_id, obj.ping_id)))
            return
        while isinstance(obj, _WRAPPERS):
            obj = obj.query
        self.requests.append(obj)
        await asyncio.sleep(self.delay_s.get(type(obj), 0))
        if type(obj) in self.cut_on:
            reply.writer.close()
            return
        reply.result(msg_id, self._answer(obj))

    def _answer(self, request: Any) -> bytes:
        pending = self.flood.get(type(request))
        if pending:
            return _error(420, f"FLOOD_WAIT_{pending.pop(0)}")
        handler = self.handlers.get(type(request))
        if handler is None:
            return _error(400, f"METHOD_NOT_IN_TEST_SERVER_{type(request).__name__}")
        try:
            answer = handler(request)
        except RpcFailure as failure:
            return _error(failure.code, failure.message)
        data = answer if isinstance(answer, bytes) else _serialise(answer)
        if self.broken.get(type(request)):
            self.broken[type(request)] -= 1
            return _unknown_constructor_in(data)
        return data

    def _next_msg_id(self) -> int:
        self._msg_counter += 1
        return (int(time.time()) << 32) | (self._msg_counter << 2) | 1


@dataclass
class _Reply:
    server: FakeTelegram
    writer: asyncio.StreamWriter
    counter: list[int]
    salt: int
    session_id: int

    def result(self, req_msg_id: int, data: bytes) -> None:
        self.send(struct.pack("<Iq", 0xF35C6D01, req_msg_id) + data)

    def send(self, body: bytes) -> None:
        if self.writer.is_closing():
            return
        data = struct.pack("<qq", self.salt, self.session_id)
        data += struct.pack("<qii", self.server._next_msg_id(), 1, len(body)) + body
        padding = os.urandom(-(len(data) + 12) % 16 + 12)
        key = self.server.auth_key.key
        msg_key = sha256(key[96 : 96 + 32] + data + padding).digest()[8:24]
        aes_key, aes_iv = MTProtoState._calc_key(key, msg_key, False)
        packet = (
            struct.pack("<Q", self.server.auth_key.key_id)
            + msg_key
            + AES.encrypt_ige(data + padding, aes_key, aes_iv)
        )
        framed = struct.pack("<ii", len(packet) + 12, self.counter[0]) + packet
        self.counter[0] += 1
        self.writer.write(framed + struct.pack("<I", crc32(framed)))


def _error(code: int, message: str) -> bytes:
    return bytes(types.RpcError(code, message))


def _serialise(answer: Any) -> bytes:
    if isinstance(answer, list):
        return struct.pack("<Ii", 0x1CB5C415, len(answer)) + b"".join(bytes(a) for a in answer)
    return bytes(answer)


def _unknown_constructor_in(data: bytes) -> bytes:
    """``data`` with its first message's constructor replaced by one no layer has."""
    marker = struct.pack("<I", types.Message.CONSTRUCTOR_ID)
    where = data.find(marker)
    assert where > 0, "the answer holds no message to break"
    return data[:where] + struct.pack("<I", 0x0BADC0DE) + data[where + 4 :]


def _marked(peer: Any) -> int:
    return int(utils.get_peer_id(peer))


# The methods ---------------------------------------------------------------------------


def _handlers(server: FakeTelegram) -> dict[type, Callable[[Any], Any]]:
    world = server.world
    return {
        functions.help.GetConfigRequest: lambda r: _config(),
        functions.users.GetUsersRequest: lambda r: _get_users(world, r),
        functions.updates.GetStateRequest: lambda r: _authorized(world) or world.state(),
        functions.auth.ImportBotAuthorizationRequest: lambda r: _import_bot(world, r),
        functions.updates.GetDifferenceRequest: lambda r: _difference(world, r),
        functions.updates.GetChannelDifferenceRequest: lambda r: _channel_difference(world, r),
        functions.channels.GetFullChannelRequest: lambda r: _full_channel(world, r),
        functions.channels.GetChannelsRequest: lambda r: _chats_by_id(world, r.id),
        functions.messages.GetChatsRequest: lambda r: types.messages.Chats(
            [world.chats[i] for i in r.id]
        ),
        functions.contacts.ResolveUsernameRequest: lambda r: _resolve(world, r),
        functions.messages.GetHistoryRequest: lambda r: _history(world, r),
        functions.messages.SendMessageRequest: lambda r: _send(world, r),
        functions.messages.GetDialogsRequest: lambda r: _dialogs(world),
    }


def _authorized(world: World) -> None:
    if not world.authorized:
        raise RpcFailure(401, "AUTH_KEY_UNREGISTERED")


def _config() -> Any:
    now = datetime.now(UTC)
    option = types.DcOption(2, "127.0.0.1", 443)
    return types.Config(
        now,
        now,
        False,
        2,
        [option],
        "",
        200,
        200000,
        100,
        1,
        1,
        1,
        1,
        1,
        1,
        1,
        1,
        172800,
        172800,
        172800,
        1,
        20,
        1,
        1,
        1,
        1,
        1,
        "https://t.me/",
        1024,
        4096,
        4,
    )


def _get_users(world: World, request: Any) -> list[Any]:
    _authorized(world)
    found = []
    for wanted in request.id:
        if isinstance(wanted, types.InputUserSelf):
            found.append(world.me)
        elif wanted.user_id in world.users:
            found.append(world.users[wanted.user_id])
    return found


def _import_bot(world: World, request: Any) -> Any:
    if request.bot_auth_token != world.bot_token:
        raise RpcFailure(400, "ACCESS_TOKEN_INVALID")
    world.authorized = True
    return types.auth.Authorization(user=world.me)


def _peers_of(world: World, messages: list[Any]) -> tuple[list[Any], list[Any]]:
    user_ids: set[int] = set()
    chat_ids: set[int] = set()
    for message in messages:
        for peer in (message.peer_id, message.from_id):
            if isinstance(peer, types.PeerUser):
                user_ids.add(peer.user_id)
            elif isinstance(peer, types.PeerChat):
                chat_ids.add(peer.chat_id)
            elif isinstance(peer, types.PeerChannel):
                chat_ids.add(peer.channel_id)
    users = [world.users[i] for i in sorted(user_ids) if i in world.users]
    return users, [world.chats[i] for i in sorted(chat_ids) if i in world.chats]


def _difference(world: World, request: Any) -> Any:
    _authorized(world)
    if request.pts < world.forgotten_below.get(None, 0):
        return types.updates.DifferenceTooLong(world.common_pts)
    pending = [e for e in world.common if e.pts > request.pts]
    since = int(request.date.timestamp()) - world.base
    too_long = [
        types.UpdateChannelTooLong(channel_id, pts=min(e.pts for e in fresh) - 1)
        for channel_id, log in world.channels.items()
        if (fresh := [e for e in log if e.clock > since])
    ]
    if not pending and not too_long:
        return types.updates.DifferenceEmpty(world.now(), 1)
    part = pending[: world.slice_size]
    new = [e.message for e in part if not e.edit]
    edits = [types.UpdateEditMessage(e.message, e.pts, 1) for e in part if e.edit]
    users, chats = _peers_of(world, [e.message for e in part])
    chats += [world.chats[u.channel_id] for u in too_long]
    if len(pending) > len(part):
        last = part[-1]
        state = types.updates.State(last.pts, world.qts, request.date, 1, 0)
        return types.updates.DifferenceSlice(new, [], [*edits, *too_long], chats, users, state)
    return types.updates.Difference(new, [], [*edits, *too_long], chats, users, world.state())


def _channel_difference(world: World, request: Any) -> Any:
    _authorized(world)
    channel_id = request.channel.channel_id
    if channel_id not in world.channels:
        raise RpcFailure(400, "CHANNEL_PRIVATE")
    log = world.channels[channel_id]
    current = world.channel_pts(channel_id)
    if request.pts < world.forgotten_below.get(channel_id, 0):
        latest = sorted(
            world.history.get(-1_000_000_000_000 - channel_id, {}).values(), key=lambda m: m.id
        )[-5:]
        users, chats = _peers_of(world, latest)
        dialog = types.Dialog(
            types.PeerChannel(channel_id),
            latest[-1].id if latest else 0,
            0,
            0,
            0,
            0,
            0,
            0,
            types.PeerNotifySettings(),
            pts=current,
        )
        return types.updates.ChannelDifferenceTooLong(dialog, latest, chats, users, final=True)
    pending = [e for e in log if e.pts > request.pts]
    if not pending:
        return types.updates.ChannelDifferenceEmpty(current, final=True)
    part = pending[: request.limit]
    new = [e.message for e in part if not e.edit]
    edits = [types.UpdateEditChannelMessage(e.message, e.pts, 1) for e in part if e.edit]
    users, chats = _peers_of(world, [e.message for e in part])
    final = len(part) == len(pending)
    return types.updates.ChannelDifference(
        part[-1].pts, new, edits, chats, users, final=final or None
    )


def _full_channel(world: World, request: Any) -> Any:
    channel_id = request.channel.channel_id
    full = types.ChannelFull(
        channel_id,
        "",
        0,
        0,
        0,
        types.PhotoEmpty(0),
        types.PeerNotifySettings(),
        [],
        world.channel_pts(channel_id),
    )
    return types.messages.ChatFull(full, [world.chats[channel_id]], [])


def _chats_by_id(world: World, wanted: list[Any]) -> Any:
    if not world.me.bot and any(not w.access_hash for w in wanted):
        raise RpcFailure(400, "CHANNEL_INVALID")  # only bots may leave the hash out
    return types.messages.Chats([world.chats[w.channel_id] for w in wanted])


def _resolve(world: World, request: Any) -> Any:
    for chat in world.chats.values():
        if getattr(chat, "username", None) == request.username:
            return types.contacts.ResolvedPeer(types.PeerChannel(chat.id), [chat], [])
    for user in world.users.values():
        if user.username == request.username:
            return types.contacts.ResolvedPeer(types.PeerUser(user.id), [], [user])
    raise RpcFailure(400, "USERNAME_NOT_OCCUPIED")


def _history(world: World, request: Any) -> Any:
    marked = utils.get_peer_id(request.peer)
    newest_first = sorted(world.history.get(marked, {}).values(), key=lambda m: -m.id)
    if request.offset_id:
        start = next((i for i, m in enumerate(newest_first) if m.id < request.offset_id), None)
    elif request.offset_date:
        start = next((i for i, m in enumerate(newest_first) if m.date < request.offset_date), None)
    else:
        start = 0
    start = len(newest_first) if start is None else start
    start = max(0, start + request.add_offset)
    page = newest_first[start : start + request.limit]
    users, chats = _peers_of(world, page)
    if isinstance(request.peer, types.InputPeerChannel):
        pts = world.channel_pts(request.peer.channel_id)
        return types.messages.ChannelMessages(pts, len(newest_first), page, [], chats, users)
    return types.messages.MessagesSlice(len(newest_first), page, [], chats, users)


def _send(world: World, request: Any) -> Any:
    if request.random_id in world.random_ids:
        raise RpcFailure(500, "RANDOM_ID_DUPLICATE")
    world.random_ids.add(request.random_id)
    world.sent.append(request)
    peer = utils.get_peer(request.peer)
    reply_to = None
    if request.reply_to is not None:
        reply_to = types.MessageReplyHeader(reply_to_msg_id=request.reply_to.reply_to_msg_id)
    message = world.post(
        peer, request.message, out=True, from_id=types.PeerUser(world.me.id), reply_to=reply_to
    )
    if isinstance(peer, types.PeerChannel):
        update = types.UpdateNewChannelMessage(message, world.channel_pts(peer.channel_id), 1)
    else:
        update = types.UpdateNewMessage(message, world.common_pts, 1)
    return types.Updates(
        [types.UpdateMessageID(message.id, request.random_id), update],
        list(world.users.values()),
        list(world.chats.values()),
        world.now(),
        0,
    )


def _dialogs(world: World) -> Any:
    dialogs = [
        types.Dialog(
            types.PeerChannel(c.id) if isinstance(c, types.Channel) else types.PeerChat(c.id),
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            types.PeerNotifySettings(),
        )
        for c in world.chats.values()
    ]
    return types.messages.Dialogs(dialogs, [], list(world.chats.values()), [])


@contextlib.asynccontextmanager
async def fake_telegram(me: Any) -> Any:
    """A started :class:`FakeTelegram` whose own user is ``me``."""
    async with FakeTelegram(me) as server:
        yield server
