using Microsoft.Extensions.Logging;

namespace OrleansProtocol.Samples.Resp;

/// <summary>A pub/sub channel of the RESP sample: its subscribers' connections, on any silo.</summary>
[Alias("OrleansProtocol.Samples.Resp.IRespChannelGrain")]
public interface IRespChannelGrain : IGrainWithStringKey
{
    /// <summary>Adds a subscriber (idempotent).</summary>
    [Alias("Subscribe")]
    Task Subscribe(ConnectionInfo subscriber);

    /// <summary>Removes a subscriber (idempotent).</summary>
    [Alias("Unsubscribe")]
    Task Unsubscribe(string connectionId);

    /// <summary>
    /// Queues <paramref name="message"/> for every subscriber and returns how many it was queued for, without waiting
    /// for any of them: a publisher never waits on, or fails with, a subscriber (no call cycle).
    /// </summary>
    [Alias("Publish")]
    Task<int> Publish([Immutable] byte[] message);
}

/// <summary>
/// The chat room's fan-out (see <c>ChatRoomGrain</c>) for RESP: an outbox per subscriber drained by one awaited
/// <see cref="IProtocolConnection.Send"/> at a time, so each subscriber gets each publisher's messages in publish order
/// and a slow one is paced by its own back-pressure. A subscriber more than <see cref="RespLimits.MaxSubscriberBacklog"/>
/// behind is disconnected, as Redis does past <c>client-output-buffer-limit pubsub</c>.
/// </summary>
/// <remarks>
/// Kept active while it has subscribers; membership is in memory, so a channel whose silo fails comes back empty (its
/// subscribers' connections stay open but hear nothing more — as a Redis node's subscribers lose a failed node).
/// </remarks>
[KeepAlive]
public sealed class RespChannelGrain(ILogger<RespChannelGrain> logger) : Grain, IRespChannelGrain
{
    private readonly Dictionary<string, Subscriber> _subscribers = [];

    /// <inheritdoc />
    public Task Subscribe(ConnectionInfo subscriber)
    {
        if (!_subscribers.ContainsKey(subscriber.ConnectionId))
        {
            _subscribers[subscriber.ConnectionId] = new Subscriber(subscriber.ConnectionId, GrainFactory.GetConnection(subscriber));
        }

        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task Unsubscribe(string connectionId)
    {
        _subscribers.Remove(connectionId);
        DeactivateWhenEmpty();
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<int> Publish(byte[] message)
    {
        // Encoded once for every subscriber: *3 $7 message $n channel $m payload.
        var push = RespReply.Encode(output =>
        {
            RespReply.ArrayHeader(output, 3);
            RespReply.Bulk(output, "message"u8);
            RespReply.Bulk(output, RespCommand.KeyBytes(this.GetPrimaryKeyString()));
            RespReply.Bulk(output, message);
        });

        var count = 0;
        foreach (var subscriber in _subscribers.Values.ToArray())
        {
            if (subscriber.QueuedBytes + push.Length > RespLimits.MaxSubscriberBacklog)
            {
                Drop(subscriber, $"{subscriber.QueuedBytes} bytes behind", close: true);
                continue;
            }

            count++;
            subscriber.Outbox.Enqueue(push);
            subscriber.QueuedBytes += push.Length;
            if (!subscriber.Sending)
            {
                subscriber.Sending = true;
                _ = DrainAsync(subscriber);
            }
        }

        DeactivateWhenEmpty();
        return Task.FromResult(count);
    }

    private async Task DrainAsync(Subscriber subscriber)
    {
        try
        {
            while (subscriber.Outbox.Count > 0 && _subscribers.TryGetValue(subscriber.ConnectionId, out var current) && current == subscriber)
            {
                // Everything queued goes in one send: a subscriber that fell behind catches up in few calls.
                var pushes = subscriber.Outbox.ToArray();
                subscriber.Outbox.Clear();
                subscriber.QueuedBytes = 0;
                try
                {
                    await subscriber.Connection.Send(pushes.Length == 1 ? pushes[0] : [.. pushes.SelectMany(p => p)]);
                }
                catch (ConnectionClosedException)
                {
                    Drop(subscriber, "its connection is gone", close: false);
                }
                catch (Exception ex)
                {
                    Drop(subscriber, $"unreachable: {ex.GetType().Name}", close: false);
                }
            }
        }
        finally
        {
            subscriber.Sending = false;
        }
    }

    private void Drop(Subscriber subscriber, string why, bool close)
    {
        if (_subscribers.Remove(subscriber.ConnectionId))
        {
            logger.LogInformation("Channel {Channel}: dropped subscriber {Connection} ({Why}).", this.GetPrimaryKeyString(), subscriber.ConnectionId, why);
            if (close)
            {
                // One-way in effect: the channel does not wait on the subscriber's connection.
                _ = subscriber.Connection.Close();
            }
        }
    }

    private void DeactivateWhenEmpty()
    {
        if (_subscribers.Count == 0)
        {
            DeactivateOnIdle();
        }
    }

    private sealed class Subscriber(string connectionId, IProtocolConnection connection)
    {
        public string ConnectionId => connectionId;

        public IProtocolConnection Connection => connection;

        public Queue<byte[]> Outbox { get; } = new();

        public long QueuedBytes { get; set; }

        public bool Sending { get; set; }
    }
}
