using System.Buffers;
using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using OrleansProtocol.Framing;
using OrleansProtocol.Gateway.Connections;
using OrleansProtocol.Gateway.Diagnostics;

namespace OrleansProtocol.Gateway.Groups;

/// <summary>
/// The groups this silo's connections are in, and the delivery of a group message to them: the gateway writes it to
/// each local member's socket itself (its writer queues it whole, between the protocol's writes), without a grain call.
/// </summary>
/// <remarks>
/// Memberships live here, next to the sockets, so they end with the socket (<see cref="LeaveAll"/> when the connection
/// ends), survive a move of the member's grain, and die with the silo. Lock-free: a membership is an entry in two
/// concurrent maps (group → members, connection → groups), and an emptied group is removed only if no join raced it.
/// </remarks>
internal sealed class ConnectionGroups(GatewayMetrics metrics, ILogger<ConnectionGroups> logger)
{
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, GatewayConnection>> _groups = new();
    private readonly ConcurrentDictionary<GatewayConnection, ConcurrentDictionary<string, byte>> _memberships = new();

    /// <summary>Groups with at least one member here.</summary>
    public int GroupCount => _groups.Count;

    /// <summary>Memberships of this silo's connections, over all groups.</summary>
    public int MembershipCount => _memberships.Values.Sum(g => g.Count);

    /// <summary>Adds a live connection to a group; false if it has ended.</summary>
    public bool Join(string group, GatewayConnection connection)
    {
        if (connection.Completion.IsCompleted)
        {
            return false;
        }

        while (true)
        {
            var members = _groups.GetOrAdd(group, static _ => new ConcurrentDictionary<string, GatewayConnection>());
            var added = members.TryAdd(connection.Id, connection);

            // A leave that emptied the group may have removed this very map meanwhile: join the group's current one.
            if (_groups.TryGetValue(group, out var current) && current == members)
            {
                if (added)
                {
                    _memberships.GetOrAdd(connection, static _ => new ConcurrentDictionary<string, byte>())[group] = 0;
                    metrics.GroupMembers(1);
                }

                break;
            }
        }

        // Ended meanwhile, after its LeaveAll ran: take the membership back.
        if (connection.Completion.IsCompleted)
        {
            Leave(group, connection.Id);
            return false;
        }

        return true;
    }

    /// <summary>Removes a connection from a group; true if it was a member.</summary>
    public bool Leave(string group, string connectionId)
    {
        if (!_groups.TryGetValue(group, out var members) || !members.TryRemove(connectionId, out var connection))
        {
            return false;
        }

        metrics.GroupMembers(-1);
        if (_memberships.TryGetValue(connection, out var groups))
        {
            groups.TryRemove(group, out _);
            if (groups.IsEmpty)
            {
                _memberships.TryRemove(new KeyValuePair<GatewayConnection, ConcurrentDictionary<string, byte>>(connection, groups));
            }
        }

        if (members.IsEmpty)
        {
            // Only this map, and only while empty; a join that raced it retries on the group's new map.
            _groups.TryRemove(new KeyValuePair<string, ConcurrentDictionary<string, GatewayConnection>>(group, members));
        }

        return true;
    }

    /// <summary>The connection ended: it leaves every group it was in.</summary>
    public void LeaveAll(GatewayConnection connection)
    {
        if (_memberships.TryGetValue(connection, out var groups))
        {
            foreach (var group in groups.Keys)
            {
                Leave(group, connection.Id);
            }
        }
    }

    /// <summary>This silo's members of a group.</summary>
    public string[] Members(string group) => _groups.TryGetValue(group, out var members) ? [.. members.Keys] : [];

    /// <summary>This silo's groups and their member counts.</summary>
    public Dictionary<string, int> Groups() => _groups.ToDictionary(g => g.Key, g => g.Value.Count);

    /// <summary>The groups a connection is in (for its status).</summary>
    public string[] GroupsOf(GatewayConnection connection) =>
        _memberships.TryGetValue(connection, out var groups) ? [.. groups.Keys] : [];

    /// <summary>
    /// Queues <paramref name="data"/> for every local member but <paramref name="except"/>: as is, or encoded as one
    /// frame in each member's framing (<paramref name="frame"/>). A member past its group backlog is closed or skipped.
    /// </summary>
    public GroupSendResult Deliver(string group, byte[] data, bool frame, string? except, GroupOverflow overflow)
    {
        if (!_groups.TryGetValue(group, out var members))
        {
            return default;
        }

        int delivered = 0, dropped = 0, closed = 0;
        (FrameFormat Format, byte[]? Bytes) encoded = default;
        List<OutboundWriter>? woken = null;
        foreach (var (id, connection) in members)
        {
            if (id == except || connection.Writer.IsAborted || connection.Writer.OutputShut)
            {
                // Not the sender's to count: an aborted or half-closed member is on its way out of the group.
                continue;
            }

            var bytes = data;
            if (frame)
            {
                // Members of one listener share a framing: encode once per framing met, not once per member.
                var format = connection.Info.Framing;
                if (!format.Equals(encoded.Format))
                {
                    encoded = (format, Encode(format, data));
                }

                if (encoded.Bytes is not { } framed)
                {
                    dropped++;
                    continue;
                }

                bytes = framed;
            }

            if (connection.Writer.Submit(OutboundKind.GroupData, bytes))
            {
                delivered++;
                (woken ??= []).Add(connection.Writer);
            }
            else if (overflow == GroupOverflow.Drop)
            {
                dropped++;
            }
            else
            {
                closed++;
                var detail = $"{connection.Writer.GroupBuffered} bytes of group messages are waiting for the peer, over MaxGroupBacklog ({connection.Listener.Options.MaxGroupBacklog}); group '{group}'.";
                GatewayLog.GroupMemberBehind(logger, connection.Id, group, connection.Writer.GroupBuffered);
                connection.Abort(ConnectionCloseReason.WriteBufferLimit, detail);

                // Out of every group now, not when its end comes round: no later message counts it again.
                LeaveAll(connection);
            }
        }

        if (woken is not null)
        {
            Send(woken);
        }

        metrics.GroupMessages("delivered", delivered);
        metrics.GroupMessages("dropped", dropped);
        metrics.GroupMessages("closed", closed);
        return new GroupSendResult(delivered, dropped, closed);
    }

    /// <summary>
    /// Starts the members' writers. The message is queued at each already (its order is fixed); the sends themselves run
    /// inline for a few members, and for many in slices on the thread pool, so a large group's sends use every core
    /// and the sender's turn is not held for them.
    /// </summary>
    private static void Send(List<OutboundWriter> writers)
    {
        const int Slice = 16;
        if (writers.Count <= Slice)
        {
            writers.ForEach(static w => w.Wake());
            return;
        }

        for (var start = 0; start < writers.Count; start += Slice)
        {
            var slice = writers.GetRange(start, Math.Min(Slice, writers.Count - start));
            ThreadPool.UnsafeQueueUserWorkItem(static slice => slice.ForEach(static w => w.Wake()), slice, preferLocal: false);
        }
    }

    private static byte[]? Encode(FrameFormat format, byte[] payload)
    {
        if (format.Kind is FramingKind.Raw or FramingKind.Custom)
        {
            return null;
        }

        try
        {
            var buffer = new ArrayBufferWriter<byte>(payload.Length + 8);
            FrameCodec.Encode(format, payload, buffer.Write);
            return buffer.WrittenSpan.ToArray();
        }
        catch (ArgumentException)
        {
            return null; // too long for its prefix, or holding its delimiter
        }
    }
}
