using Microsoft.Extensions.Logging;

namespace OrleansProtocol;

/// <summary>
/// Writes to many connections from one grain (a chat room, a pub/sub channel) without letting one member fail or stall
/// the others: each member has an outbox drained by its own loop, one awaited <see cref="IProtocolConnection.Send"/> at
/// a time. Every member gets every message once and in the order it was queued, on any topology; a slow member is
/// paced by its own back-pressure; a member whose connection is gone, or that falls more than
/// <see cref="MaxQueuedBytes"/> behind, is dropped.
/// </summary>
/// <remarks>
/// Use it from the owning grain's turns only (it is not thread-safe; its loops run on the grain's scheduler). Queuing
/// never waits on a member, so a member's callback may await the owning grain without a call cycle: the grain answers
/// at once and the writes follow.
/// </remarks>
/// <param name="grains">The owning grain's factory.</param>
/// <param name="logger">Where drops are logged (Information).</param>
public sealed class ConnectionFanOut(IGrainFactory grains, ILogger logger)
{
    private readonly Dictionary<string, Member> _members = [];

    /// <summary>How far behind a member may fall, in queued bytes not yet sent to its connection. Defaults to 1 MiB.</summary>
    public long MaxQueuedBytes { get; init; } = 1024 * 1024;

    /// <summary>
    /// Failed sends in a row, other than "the connection is gone", before a member is taken for unreachable and dropped
    /// (its silo failing, say). Defaults to 3; what a failed send carried is lost for that member only.
    /// </summary>
    public int MaxFailures { get; init; } = 3;

    /// <summary>Whether a member dropped for falling behind also has its connection closed (as Redis does to a pub/sub client). Defaults to false.</summary>
    public bool CloseWhenBehind { get; init; }

    /// <summary>Called in the grain's turn when a member is dropped (not when it is removed): its connection id and why.</summary>
    public Action<string, string>? Dropped { get; init; }

    /// <summary>Members now.</summary>
    public int Count => _members.Count;

    /// <summary>Whether the connection is a member.</summary>
    public bool Contains(string connectionId) => _members.ContainsKey(connectionId);

    /// <summary>Adds a member; does nothing if it is one already.</summary>
    public void Add(ConnectionInfo member)
    {
        if (!_members.ContainsKey(member.ConnectionId))
        {
            _members[member.ConnectionId] = new Member(member.ConnectionId, grains.GetConnection(member));
        }
    }

    /// <summary>Removes a member; what was queued for it is not sent. Returns whether it was one.</summary>
    public bool Remove(string connectionId) => _members.Remove(connectionId);

    /// <summary>
    /// Queues <paramref name="data"/> for every member but <paramref name="except"/> and returns how many it was queued
    /// for. A member it would put more than <see cref="MaxQueuedBytes"/> behind is dropped instead.
    /// </summary>
    public int Send(byte[] data, string? except = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        var queued = 0;
        foreach (var member in _members.Values.Where(m => m.ConnectionId != except).ToArray())
        {
            if (member.QueuedBytes + data.Length > MaxQueuedBytes)
            {
                Drop(member, $"{member.QueuedBytes} bytes behind", CloseWhenBehind);
                continue;
            }

            member.Outbox.Enqueue(data);
            member.QueuedBytes += data.Length;
            queued++;
            if (!member.Sending)
            {
                member.Sending = true;

                // Started in the grain's turn, so it runs on the grain's scheduler, between the grain's requests.
                _ = DrainAsync(member);
            }
        }

        return queued;
    }

    private async Task DrainAsync(Member member)
    {
        try
        {
            while (member.Outbox.Count > 0 && _members.TryGetValue(member.ConnectionId, out var current) && current == member)
            {
                // Everything queued goes in one send: a member that fell behind catches up in few calls.
                var pending = member.Outbox.ToArray();
                member.Outbox.Clear();
                member.QueuedBytes = 0;
                try
                {
                    await member.Connection.Send(pending.Length == 1 ? pending[0] : [.. pending.SelectMany(p => p)]);
                    member.Failures = 0;
                }
                catch (ConnectionClosedException)
                {
                    Drop(member, "its connection is gone", close: false);
                }
                catch (Exception ex) when (++member.Failures < MaxFailures)
                {
                    // Unreachable for now: this send is lost for this member, the others are not.
                    logger.LogDebug(ex, "Could not reach {Member}; {Failures} failure(s) in a row.", member.ConnectionId, member.Failures);
                }
                catch (Exception ex)
                {
                    Drop(member, $"unreachable: {ex.GetType().Name}", close: false);
                }
            }
        }
        finally
        {
            member.Sending = false;
        }
    }

    private void Drop(Member member, string why, bool close)
    {
        if (_members.TryGetValue(member.ConnectionId, out var current) && current == member)
        {
            _members.Remove(member.ConnectionId);
            logger.LogInformation("Dropped {Member} from a fan-out ({Why}).", member.ConnectionId, why);
            if (close)
            {
                // Not awaited: the owner never waits on a member.
                member.Connection.Close().Ignore();
            }

            Dropped?.Invoke(member.ConnectionId, why);
        }
    }

    private sealed class Member(string connectionId, IProtocolConnection connection)
    {
        public string ConnectionId => connectionId;

        public IProtocolConnection Connection => connection;

        public Queue<byte[]> Outbox { get; } = new();

        public long QueuedBytes { get; set; }

        public int Failures { get; set; }

        public bool Sending { get; set; }
    }
}
