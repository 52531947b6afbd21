using System.Text;

namespace OrleansProtocol.Samples;

/// <summary>
/// A line chat: <c>/nick name</c>, <c>/join room</c>, and any other line goes to everyone else in the room. The room
/// is a grain that holds its members' connection addresses and writes to them through <see cref="IProtocolConnection"/>,
/// so clients on different silos' gateways talk to each other. Served on 127.0.0.1:7001 by the gateway host.
/// </summary>
public sealed class ChatGrain : ProtocolGrain
{
    private const int MaxLineLength = 4096;
    private readonly List<byte> _line = [];
    private string _nick = "guest";
    private string? _room;

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
        else if (_room is null)
        {
            Transport.Write("* /join a room first\n"u8);
        }
        else if (line.Length > 0)
        {
            await GrainFactory.GetGrain<IChatRoomGrain>(_room).Say(Transport.Connection.ConnectionId, _nick, line);
        }
    }
}

/// <summary>A chat room: its members' connections, and the broadcast.</summary>
[Alias("OrleansProtocol.Samples.IChatRoomGrain")]
public interface IChatRoomGrain : IGrainWithStringKey
{
    /// <summary>Adds a member; returns how many others are in the room.</summary>
    [Alias("Join")]
    Task<int> Join(ConnectionInfo member, string nick);

    /// <summary>Removes a member.</summary>
    [Alias("Leave")]
    Task Leave(string connectionId, string nick);

    /// <summary>Sends <c>&lt;nick&gt; text</c> to every member but the speaker.</summary>
    [Alias("Say")]
    Task Say(string connectionId, string nick, string text);
}

/// <summary>The room grain: writes to members through their connections' addresses, wherever their sockets are.</summary>
public sealed class ChatRoomGrain : Grain, IChatRoomGrain
{
    private readonly Dictionary<string, ConnectionInfo> _members = [];

    /// <inheritdoc />
    public async Task<int> Join(ConnectionInfo member, string nick)
    {
        _members[member.ConnectionId] = member;
        await Broadcast(member.ConnectionId, $"* {nick} joined\n");
        return _members.Count - 1;
    }

    /// <inheritdoc />
    public async Task Leave(string connectionId, string nick)
    {
        if (_members.Remove(connectionId))
        {
            await Broadcast(connectionId, $"* {nick} left\n");
        }
    }

    /// <inheritdoc />
    public Task Say(string connectionId, string nick, string text) => Broadcast(connectionId, $"<{nick}> {text}\n");

    private Task Broadcast(string from, string line)
    {
        var bytes = Encoding.UTF8.GetBytes(line);
        return Task.WhenAll(_members.Values
            .Where(m => m.ConnectionId != from)
            .Select(m => GrainFactory.GetConnection(m).Send(bytes)));
    }
}
