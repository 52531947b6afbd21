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
/// A <see cref="ConnectionFanOut"/> of the channel's subscribers (as the chat room): each subscriber gets each
/// publisher's messages in publish order and a slow one is paced by its own back-pressure. A subscriber more than
/// <see cref="RespLimits.MaxSubscriberBacklog"/> behind is disconnected, as Redis does past
/// <c>client-output-buffer-limit pubsub</c>.
/// </summary>
/// <remarks>
/// Kept active while it has subscribers; membership is in memory, so a channel whose silo fails comes back empty (its
/// subscribers' connections stay open but hear nothing more — as a Redis node's subscribers lose a failed node).
/// </remarks>
[KeepAlive]
public sealed class RespChannelGrain : Grain, IRespChannelGrain
{
    private readonly ConnectionFanOut _subscribers;

    /// <summary>Created by Orleans.</summary>
    public RespChannelGrain(IGrainFactory grains, ILogger<RespChannelGrain> logger)
    {
        _subscribers = new ConnectionFanOut(grains, logger)
        {
            MaxQueuedBytes = RespLimits.MaxSubscriberBacklog,
            CloseWhenBehind = true,

            // A subscriber that cannot be reached is dropped at once: it would miss messages silently otherwise.
            MaxFailures = 1,
        };
    }

    /// <inheritdoc />
    public Task Subscribe(ConnectionInfo subscriber)
    {
        _subscribers.Add(subscriber);
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

        var count = _subscribers.Send(push);
        DeactivateWhenEmpty();
        return Task.FromResult(count);
    }

    private void DeactivateWhenEmpty()
    {
        if (_subscribers.Count == 0)
        {
            DeactivateOnIdle();
        }
    }
}
