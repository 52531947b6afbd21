using System.Buffers;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.Options;
using Orleans.Concurrency;
using Orleans.Placement;

namespace OrleansProtocol.Samples.Resp;

/// <summary>What one RESP connection tells others about itself (<c>CLIENT LIST</c>).</summary>
[Alias("OrleansProtocol.Samples.Resp.IRespClient")]
public interface IRespClient : IGrainWithStringKey
{
    /// <summary>The name set with <c>CLIENT SETNAME</c>, or empty. Interleaves: never waits for the connection's commands.</summary>
    [AlwaysInterleave]
    [ReadOnly]
    [Alias("GetName")]
    Task<string> GetName();
}

/// <summary>
/// A Redis-compatible server (RESP2), one grain per connection: the gateway's <see cref="RespFrameDecoder"/> hands it
/// whole commands, a pipelined burst at a time; keys live in <see cref="RespKeyspaceGrain"/>s and a pub/sub channel is a
/// connection group (<see cref="IConnectionGroup"/>) that the subscribers' gateways deliver, so every connection on
/// every silo sees the same keys and messages. Served on
/// 127.0.0.1:6380 by the gateway host (<c>redis-cli -p 6380</c>).
/// </summary>
/// <remarks>
/// A burst's key commands go out as one call per keyspace grain they touch, all at once, and the replies are written in
/// command order in one write; commands to the same grain keep their order inside that call. Commands that wait on
/// other grains for their effect (PUBLISH, SUBSCRIBE, UNSUBSCRIBE) first finish what came before them.
/// </remarks>
[PreferLocalPlacement]
public sealed class RespGrain(IOptions<RespOptions> options) : ProtocolGrain, IRespClient
{
    // Redis' arity: exact when positive, a minimum when negative (the command's name counts).
    private static readonly Dictionary<string, int> Arity = new(StringComparer.Ordinal)
    {
        ["PING"] = -1, ["ECHO"] = 2, ["SELECT"] = 2, ["QUIT"] = -1, ["RESET"] = 1, ["CLIENT"] = -2, ["COMMAND"] = -1,
        ["CONFIG"] = -2, ["GET"] = 2, ["SET"] = -3, ["DEL"] = -2, ["EXISTS"] = -2, ["INCR"] = 2, ["INCRBY"] = 3,
        ["DECR"] = 2, ["DECRBY"] = 3, ["MGET"] = -2, ["MSET"] = -3, ["EXPIRE"] = 3, ["TTL"] = 2, ["PUBLISH"] = 3,
        ["SUBSCRIBE"] = -2, ["UNSUBSCRIBE"] = -1,
    };

    private static readonly HashSet<string> AllowedWhileSubscribed = ["SUBSCRIBE", "UNSUBSCRIBE", "PING", "QUIT", "RESET"];

    private readonly RespOptions _options = options.Value;
    private readonly ArrayBufferWriter<byte> _output = new(256);
    private RespSubscriptions? _pubSub;
    private string _name = "";
    private Burst? _burst;

    /// <inheritdoc />
    public Task<string> GetName() => Task.FromResult(_name);

    /// <inheritdoc />
    /// <remarks>
    /// A quiet client holds no activation; what it keeps is its name and its channels (the memberships themselves are
    /// the gateway's, so a subscriber's messages reach it while it sleeps). The pending pipelined burst is only ever
    /// held within a callback.
    /// </remarks>
    protected override bool Hibernatable => true;

    /// <inheritdoc />
    protected override void Dehydrate(IDehydrationContext context)
    {
        context.TryAddValue("name", _name);
        if (_pubSub is { Count: > 0 } pubSub)
        {
            context.TryAddValue("channels", pubSub.Channels);
        }
    }

    /// <inheritdoc />
    protected override void Rehydrate(IRehydrationContext context)
    {
        _name = context.TryGetValue("name", out string? name) ? name : "";
        if (context.TryGetValue("channels", out string[]? channels))
        {
            Subscriptions.Restore(channels);
        }
    }

    /// <inheritdoc />
    protected override async Task<int> FramesReceived(ReadOnlyMemory<byte>[] frames)
    {
        var burst = _burst ??= new Burst(_options);
        burst.Clear();
        for (var i = 0; i < frames.Length; i++)
        {
            var arguments = RespCommand.Parse(frames[i]);
            if (arguments.Length == 0)
            {
                continue;
            }

            var name = RespCommand.Name(arguments[0]);
            if (Refusal(name, arguments) is { } error)
            {
                burst.Reply(o => RespReply.Error(o, error));
                continue;
            }

            switch (name)
            {
                case "PUBLISH" or "SUBSCRIBE" or "UNSUBSCRIBE":
                    await FlushAsync(burst);
                    await PubSubAsync(name, arguments);
                    break;
                case "QUIT":
                    burst.Reply(o => RespReply.Raw(o, RespReply.Ok));
                    await FlushAsync(burst);
                    Transport.Close();
                    return i + 1;
                case "RESET":
                    await FlushAsync(burst);
                    Subscriptions.Unsubscribe([], reply: false);
                    _name = "";
                    Transport.Write("+RESET\r\n"u8);
                    break;
                default:
                    Run(name, arguments, burst);
                    break;
            }
        }

        await FlushAsync(burst);
        return frames.Length;
    }

    /// <inheritdoc />
    protected override Task CloseRequested(ConnectionCloseReason reason, string? message)
    {
        // The decoder's refusals carry Redis' own text ("Protocol error: invalid bulk length"): said before the FIN.
        if (reason is ConnectionCloseReason.FrameTooLarge or ConnectionCloseReason.ProtocolError)
        {
            _output.ResetWrittenCount();
            RespReply.Error(_output, "ERR " + (message ?? "Protocol error"));
            Transport.Write(_output.WrittenSpan);
        }

        return Task.CompletedTask;
    }

    /// <inheritdoc />
    protected override Task ConnectionLost(Exception? exception)
    {
        Subscriptions.Clear();
        return Task.CompletedTask;
    }

    private string? Refusal(string name, byte[][] arguments)
    {
        if (!Arity.TryGetValue(name, out var arity))
        {
            var start = string.Concat(arguments.Skip(1).Take(3).Select(a => $"'{Encoding.UTF8.GetString(a)}' "));
            return $"ERR unknown command '{Encoding.UTF8.GetString(arguments[0])}', with args beginning with: {start}";
        }

        if (arity > 0 ? arguments.Length != arity : arguments.Length < -arity)
        {
            return $"ERR wrong number of arguments for '{name.ToLowerInvariant()}' command";
        }

        if (Subscriptions.Count > 0 && !AllowedWhileSubscribed.Contains(name))
        {
            return $"ERR Can't execute '{name.ToLowerInvariant()}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context";
        }

        return null;
    }

    private void Run(string name, byte[][] a, Burst burst)
    {
        switch (name)
        {
            case "PING" when Subscriptions.Count > 0:
                burst.Reply(o =>
                {
                    RespReply.ArrayHeader(o, 2);
                    RespReply.Bulk(o, "pong"u8);
                    RespReply.Bulk(o, a.Length > 1 ? a[1] : []);
                });
                break;
            case "PING":
                burst.Reply(o =>
                {
                    if (a.Length > 2)
                    {
                        RespReply.Error(o, "ERR wrong number of arguments for 'ping' command");
                    }
                    else if (a.Length == 2)
                    {
                        RespReply.Bulk(o, a[1]);
                    }
                    else
                    {
                        RespReply.Raw(o, "+PONG\r\n"u8);
                    }
                });
                break;
            case "ECHO":
                burst.Reply(o => RespReply.Bulk(o, a[1]));
                break;
            case "SELECT":
                burst.Reply(o =>
                {
                    if (!RespCommand.TryInteger(a[1], out var db))
                    {
                        RespReply.Error(o, RespReply.NotAnInteger);
                    }
                    else if (db != 0)
                    {
                        RespReply.Error(o, "ERR DB index is out of range");
                    }
                    else
                    {
                        RespReply.Raw(o, RespReply.Ok);
                    }
                });
                break;
            case "CLIENT":
                Client(a, burst);
                break;
            case "COMMAND":
                burst.Reply(o => Command(a, o));
                break;
            case "CONFIG":
                burst.Reply(o => Config(a, o));
                break;
            case "GET" or "TTL":
                burst.Key(a[1], a);
                break;
            case "SET":
                burst.Key(a[1], a);
                break;
            case "EXPIRE":
                burst.Key(a[1], a);
                break;
            case "INCR" or "DECR" or "INCRBY" or "DECRBY":
                IncrBy(name, a, burst);
                break;
            case "DEL" or "EXISTS":
                burst.Keys(Burst.Combine.Sum, a.Skip(1).Select(k => (k, new[] { a[0], k })));
                break;
            case "MGET":
                burst.Keys(Burst.Combine.Array, a.Skip(1).Select(k => (k, new[] { "GET"u8.ToArray(), k })));
                break;
            case "MSET" when a.Length % 2 == 0:
                burst.Reply(o => RespReply.Error(o, "ERR wrong number of arguments for 'mset' command"));
                break;
            case "MSET":
                burst.Keys(Burst.Combine.Ok, Enumerable.Range(0, (a.Length - 1) / 2).Select(i => (a[1 + (2 * i)], new[] { "SET"u8.ToArray(), a[1 + (2 * i)], a[2 + (2 * i)] })));
                break;
        }
    }

    private static void IncrBy(string name, byte[][] a, Burst burst)
    {
        long by = name switch { "INCR" => 1, "DECR" => -1, _ => 0 };
        if (name is "INCRBY" or "DECRBY")
        {
            if (!RespCommand.TryInteger(a[2], out by))
            {
                burst.Reply(o => RespReply.Error(o, RespReply.NotAnInteger));
                return;
            }

            if (name == "DECRBY")
            {
                if (by == long.MinValue)
                {
                    burst.Reply(o => RespReply.Error(o, "ERR decrement would overflow"));
                    return;
                }

                by = -by;
            }
        }

        burst.Key(a[1], ["INCRBY"u8.ToArray(), a[1], Encoding.ASCII.GetBytes(by.ToString(CultureInfo.InvariantCulture))]);
    }

    private void Client(byte[][] a, Burst burst)
    {
        var connection = Transport.Connection;
        switch (RespCommand.Name(a[1]))
        {
            case "SETNAME" when a.Length == 3:
                var name = Encoding.UTF8.GetString(a[2]);
                if (name.Any(c => c <= ' ' || c > '~'))
                {
                    burst.Reply(o => RespReply.Error(o, "ERR Client names cannot contain spaces, newlines or special characters."));
                    break;
                }

                _name = name;
                burst.Reply(o => RespReply.Raw(o, RespReply.Ok));
                break;
            case "GETNAME" when a.Length == 2:
                var current = _name;
                burst.Reply(o => RespReply.Bulk(o, current.Length == 0 ? null : Encoding.UTF8.GetBytes(current)));
                break;
            case "ID" when a.Length == 2:
                burst.Reply(o => RespReply.Integer(o, ClientId(connection.ConnectionId)));
                break;
            case "LIST" when a.Length == 2:
                burst.Pending(ClientListAsync());
                break;
            default:
                burst.Reply(o => RespReply.Error(o, $"ERR unknown subcommand '{Encoding.UTF8.GetString(a[1])}'. Try CLIENT HELP."));
                break;
        }
    }

    /// <summary>A number for the connection, as Redis' client id: from the random tail of its id, so unique across silos without coordination.</summary>
    private static long ClientId(string connectionId) =>
        long.Parse(connectionId.AsSpan(connectionId.Length - 15), NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    private async Task<byte[]> ClientListAsync()
    {
        var connections = await GrainFactory.ListConnectionsAsync(Transport.Connection.ListenerName);
        var names = await Task.WhenAll(connections.Select(c => c.ConnectionId == Transport.Connection.ConnectionId
            ? Task.FromResult(_name)
            : GrainFactory.GetGrain<IRespClient>(GrainId.Create(c.GrainType!, c.ConnectionId)).GetName()));
        var text = new StringBuilder();
        for (var i = 0; i < connections.Length; i++)
        {
            var c = connections[i];
            text.Append(CultureInfo.InvariantCulture, $"id={ClientId(c.ConnectionId)} addr={c.RemoteEndPoint} laddr={c.LocalEndPoint} name={names[i]} db=0\n");
        }

        return RespReply.Encode(o => RespReply.Bulk(o, Encoding.UTF8.GetBytes(text.ToString())));
    }

    private static void Command(byte[][] a, IBufferWriter<byte> o)
    {
        var sub = a.Length > 1 ? RespCommand.Name(a[1]) : "";
        switch (sub)
        {
            case "":
                // Name, arity, flags, first key, last key, step: what clients read to learn the commands.
                RespReply.ArrayHeader(o, Arity.Count);
                foreach (var (name, arity) in Arity)
                {
                    var keyed = name is "GET" or "SET" or "DEL" or "EXISTS" or "INCR" or "INCRBY" or "DECR" or "DECRBY" or "MGET" or "MSET" or "EXPIRE" or "TTL";
                    RespReply.ArrayHeader(o, 6);
                    RespReply.Bulk(o, Encoding.ASCII.GetBytes(name.ToLowerInvariant()));
                    RespReply.Integer(o, arity);
                    RespReply.ArrayHeader(o, 0);
                    RespReply.Integer(o, keyed ? 1 : 0);
                    RespReply.Integer(o, !keyed ? 0 : name is "DEL" or "EXISTS" or "MGET" or "MSET" ? -1 : 1);
                    RespReply.Integer(o, !keyed ? 0 : name == "MSET" ? 2 : 1);
                }

                break;
            case "COUNT":
                RespReply.Integer(o, Arity.Count);
                break;
            case "DOCS":
                // redis-cli asks for docs to show hints; it does without them.
                RespReply.ArrayHeader(o, 0);
                break;
            default:
                RespReply.Error(o, $"ERR unknown subcommand '{Encoding.UTF8.GetString(a[1])}'. Try COMMAND HELP.");
                break;
        }
    }

    private static void Config(byte[][] a, IBufferWriter<byte> o)
    {
        if (RespCommand.Name(a[1]) != "GET" || a.Length != 3)
        {
            RespReply.Error(o, "ERR CONFIG is read-only here: only CONFIG GET is supported");
            return;
        }

        // What redis-benchmark asks for at start; everything else is an empty list, as for an unknown parameter.
        var value = RespCommand.Name(a[2]) switch { "SAVE" => "", "APPENDONLY" => "no", _ => null };
        if (value is null)
        {
            RespReply.ArrayHeader(o, 0);
            return;
        }

        RespReply.ArrayHeader(o, 2);
        RespReply.Bulk(o, Encoding.ASCII.GetBytes(RespCommand.Name(a[2]).ToLowerInvariant()));
        RespReply.Bulk(o, Encoding.ASCII.GetBytes(value));
    }

    private RespSubscriptions Subscriptions => _pubSub ??= new RespSubscriptions(() => Transport, Write);

    private async Task PubSubAsync(string name, byte[][] a)
    {
        switch (name)
        {
            case "PUBLISH":
                var receivers = await RespSubscriptions.PublishAsync(GrainFactory, RespCommand.Key(a[1]), a[2]);
                Write(o => RespReply.Integer(o, receivers));
                break;
            case "SUBSCRIBE":
                Subscriptions.Subscribe(a.Skip(1).Select(RespCommand.Key));
                break;
            case "UNSUBSCRIBE":
                Subscriptions.Unsubscribe([.. a.Skip(1).Select(RespCommand.Key)]);
                break;
        }
    }

    private void Write(Action<IBufferWriter<byte>> reply)
    {
        _output.ResetWrittenCount();
        reply(_output);
        Transport.Write(_output.WrittenSpan);
    }

    /// <summary>Runs the burst's key commands (one call per keyspace grain) and writes every reply, in order, at once.</summary>
    private async Task FlushAsync(Burst burst)
    {
        if (burst.IsEmpty)
        {
            return;
        }

        await burst.RunAsync(GrainFactory);
        _output.ResetWrittenCount();
        burst.WriteReplies(_output);
        Transport.Write(_output.WrittenSpan);
        burst.Clear();
    }
}
