using System.Text;
using Orleans.Placement;

namespace OrleansProtocol.Samples;

/// <summary>
/// A line chat: <c>/nick name</c>, <c>/join room</c>, <c>/whoami</c>, and any other line goes to everyone else in the
/// room. The room is a grain that knows its members' nicks; its lines go out through a connection group
/// (<see cref="IConnectionGroup"/>), which every silo's gateway delivers to its own members' sockets, so clients on
/// different silos' gateways talk to each other. Served on 127.0.0.1:7001 by the gateway host.
/// </summary>
/// <remarks>
/// The connection's state — nick, room, the line being read, lines received — moves with the grain when its silo
/// stops (<see cref="Migratable"/>, <see cref="Dehydrate"/>, <see cref="Rehydrate"/>): <c>/whoami</c> goes on counting.
/// </remarks>
public sealed class ChatGrain : ProtocolGrain
{
    private const int MaxLineLength = 4096;
    private readonly List<byte> _line = [];
    private string _nick = "guest";
    private string? _room;
    private long _lines;

    /// <inheritdoc />
    protected override bool Migratable => true;

    /// <inheritdoc />
    /// <remarks>A quiet member holds no activation: the room's lines reach it through the gateway all the same.</remarks>
    protected override bool Hibernatable => true;

    /// <inheritdoc />
    protected override void Dehydrate(IDehydrationContext context)
    {
        context.TryAddValue("nick", _nick);
        context.TryAddValue("room", _room);
        context.TryAddValue("lines", _lines);
        context.TryAddValue("partial", _line.ToArray());
    }

    /// <inheritdoc />
    protected override void Rehydrate(IRehydrationContext context)
    {
        _nick = context.TryGetValue("nick", out string? nick) ? nick : _nick;
        _room = context.TryGetValue("room", out string? room) ? room : null;
        _lines = context.TryGetValue("lines", out long lines) ? lines : 0;
        if (context.TryGetValue("partial", out byte[]? partial))
        {
            _line.AddRange(partial);
        }
    }

    /// <inheritdoc />
    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        _nick = $"guest-{transport.Connection.ConnectionId[^4..]}";
        transport.Write(Encoding.UTF8.GetBytes($"* welcome, {_nick}. /nick NAME, /join ROOM, then talk.\n"));
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    protected override async Task DataReceived(ReadOnlyMemory<byte> data)
    {
        foreach (var b in data.ToArray())
        {
            if (b != (byte)'\n')
            {
                _line.Add(b);
                if (_line.Count > MaxLineLength)
                {
                    Transport.Close(ConnectionCloseReason.FrameTooLarge, $"A line is longer than {MaxLineLength} bytes.");
                    return;
                }

                continue;
            }

            var line = Encoding.UTF8.GetString(_line.ToArray()).TrimEnd('\r');
            _line.Clear();
            _lines++;
            await HandleLine(line);
        }
    }

    /// <inheritdoc />
    protected override async Task ConnectionLost(Exception? exception)
    {
        if (_room is { } room)
        {
            await GrainFactory.GetGrain<IChatRoomGrain>(room).Leave(Transport.Connection.ConnectionId, _nick);
        }
    }

    private async Task HandleLine(string line)
    {
        if (line.StartsWith("/nick ", StringComparison.Ordinal) && line.Length > 6)
        {
            _nick = line[6..].Trim();
            Transport.Write(Encoding.UTF8.GetBytes($"* you are now {_nick}\n"));
        }
        else if (line.StartsWith("/join ", StringComparison.Ordinal) && line.Length > 6)
        {
            if (_room is { } old)
            {
                await GrainFactory.GetGrain<IChatRoomGrain>(old).Leave(Transport.Connection.ConnectionId, _nick);
            }

            _room = line[6..].Trim();
            var others = await GrainFactory.GetGrain<IChatRoomGrain>(_room).Join(Transport.Connection, _nick);
            Transport.Write(Encoding.UTF8.GetBytes($"* joined {_room} ({others} others here)\n"));
        }
        else if (line == "/whoami")
        {
            Transport.Write(Encoding.UTF8.GetBytes($"* you are {_nick} in {_room ?? "no room"}; {_lines} lines received\n"));
        }
        else if (_room is null)
        {
            Transport.Write("* /join a room first\n"u8);
        }
        else if (line.Length > 0)
        {
            await GrainFactory.GetGrain<IChatRoomGrain>(_room).Say(Transport.Connection, _nick, line);
        }
    }
}

/// <summary>
/// The room grain: who is in the room under which nick, and the notices. Lines go to the members through the room's
/// connection group (<see cref="IConnectionGroup"/>, named <c>chat:ROOM</c>), written by each member's gateway: every
/// member gets every line once and in its speaker's order, a slow member cannot hold up the others, and one that falls
/// past its listener's <c>MaxGroupBacklog</c> is closed (and leaves, with a "left" line).
/// </summary>
/// <remarks>
/// The room lives next to its first member (<c>PreferLocalPlacement</c>). The memberships are kept by the gateways, so
/// they outlive this grain: if its silo fails, the room comes back knowing no nicks, and members are greeted again as
/// they speak, but no member misses a line.
/// </remarks>
[PreferLocalPlacement]
public sealed class ChatRoomGrain : Grain, IChatRoomGrain
{
    private readonly Dictionary<string, string> _nicks = [];

    private IConnectionGroup Members => GrainFactory.GetGroup(GroupName(this.GetPrimaryKeyString()));

    /// <summary>The connection group a room's lines go to.</summary>
    public static string GroupName(string room) => $"chat:{room}";

    /// <inheritdoc />
    public async Task<int> Join(ConnectionInfo member, string nick)
    {
        await Members.Add(member);
        _nicks[member.ConnectionId] = nick;
        await Members.Send(Encoding.UTF8.GetBytes($"* {nick} joined\n"), except: member.ConnectionId);
        return await Members.Count() - 1;
    }

    /// <inheritdoc />
    public async Task Leave(string connectionId, string nick)
    {
        _nicks.Remove(connectionId);
        if (await Members.Remove(connectionId))
        {
            await Members.Send(Encoding.UTF8.GetBytes($"* {nick} left\n"), except: connectionId);
        }
    }

    /// <inheritdoc />
    public async Task Say(ConnectionInfo speaker, string nick, string text)
    {
        if (!_nicks.ContainsKey(speaker.ConnectionId))
        {
            // The room was reactivated (its silo failed): the speaker is still a member, the room learns its nick.
            await Members.Add(speaker);
            _nicks[speaker.ConnectionId] = nick;
        }

        // Posted: the room takes its next line without waiting for every silo's gateway; each delivers in the room's order.
        await Members.Post(Encoding.UTF8.GetBytes($"<{nick}> {text}\n"), except: speaker.ConnectionId);
    }

    /// <inheritdoc />
    public async Task<int> Announce(string text) => (await Members.Send(Encoding.UTF8.GetBytes($"* {text}\n"))).Delivered;
}
