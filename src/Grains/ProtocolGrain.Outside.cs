using Microsoft.Extensions.Logging;
using OrleansProtocol.Wire;

namespace OrleansProtocol;

/// <summary>
/// The connection reached from outside its callbacks: what the protocol writes then is pushed through the gateway's
/// observer (<see cref="UnsolicitedSender{TBatch}"/>, held at the high-water mark), and any grain or client reaches
/// the connection by its id (<see cref="IProtocolConnection"/>).
/// </summary>
public abstract partial class ProtocolGrain
{
    /// <summary>
    /// Called by the transport after every operation. Inside a callback the operations go back with its reply; outside
    /// one they are pushed through the observer.
    /// </summary>
    internal void OnTransportChanged()
    {
        if (_sender is null && (_callbackDepth > 0 || _observer is null))
        {
            // The reply carries it. The sender (and its delegates) is made only for a grain that pushes, so a
            // connection that only answers what it reads keeps its idle grain small.
            return;
        }

        Sender.Changed();
    }

    private UnsolicitedSender<TransportBatch> Sender => _sender ??= new UnsolicitedSender<TransportBatch>(
        () => _callbackDepth > 0 || _observer is null,
        () => _transport!.TakeBatch(),
        async batch => _transport!.OnBytesSent(await _observer!.Send(this.GetGrainId(), batch)),
        onFailure: async ex =>
        {
            if (ex is ConnectionClosedException)
            {
                // The connection ended while this push was on its way; the gateway tells the grain in its own time.
                Logger.LogDebug("Connection {ConnectionId}: a push found the connection ended.", _transport!.Connection.ConnectionId);
                return;
            }

            Logger.LogWarning(ex, "Connection {ConnectionId}: the gateway could not be reached; the connection is lost.", _transport!.Connection.ConnectionId);
            await DeliverConnectionLost(
                ConnectionCloseReason.GatewayUnavailable,
                new ConnectionClosedException(ConnectionCloseReason.GatewayUnavailable, "The gateway holding the socket could not be reached.", ex));
            DeactivateOnIdle();
        },
        overHighWater: () => _transport!.IsOverHighWater,
        pendingData: () => _transport!.HasPendingData);

    // IProtocolConnection: [AlwaysInterleave], so these run between the awaits of a callback in progress; they only
    // record transport operations, which is safe at any await of the protocol.
    // A hibernated connection's grain wakes for them (WakeForCallAsync).
    async Task IProtocolConnection.Send(byte[] data)
    {
        (await LiveTransportAsync()).Write(data);
        await WhenPushedAsync();
    }

    async Task IProtocolConnection.SendFrame(byte[] frame)
    {
        (await LiveTransportAsync()).WriteFrame(frame);
        await WhenPushedAsync();
    }

    async Task IProtocolConnection.Close()
    {
        if (await IsLiveConnectionAsync())
        {
            _transport!.Close();
        }
    }

    async Task IProtocolConnection.Abort()
    {
        if (await IsLiveConnectionAsync())
        {
            _transport!.Abort();
        }
    }

    async Task<ConnectionInfo?> IProtocolConnection.GetInfo() =>
        await IsLiveConnectionAsync() ? _transport!.Connection : null;

    /// <summary>True while this grain serves a live connection (woken if it was hibernating). A grain that never had one goes away.</summary>
    private async ValueTask<bool> IsLiveConnectionAsync()
    {
        if (_transport is null && !_lostDelivered)
        {
            await WakeForCallAsync();
        }

        if (_transport is null)
        {
            // Not a connection's grain: a call by id after the connection ended (or its silo died) activated it
            // afresh. Nothing will ever come of it; let it go rather than keep it alive forever.
            DeactivateOnIdle();
        }

        return _transport is not null && !_lostDelivered;
    }

    /// <summary>The transport of the live connection, for a call from outside.</summary>
    /// <exception cref="ConnectionClosedException">The connection is gone.</exception>
    private async ValueTask<ProtocolTransport> LiveTransportAsync() => await IsLiveConnectionAsync()
        ? _transport!
        : throw new ConnectionClosedException(
            CloseReason == ConnectionCloseReason.None ? ConnectionCloseReason.GrainUnavailable : CloseReason,
            $"Connection {this.GetPrimaryKeyString()} is gone: no live connection has this id.");

    /// <summary>
    /// Back-pressure for writes from outside the connection's callbacks: completes once they are pushed and the
    /// gateway's write buffer is back at or below the high-water mark. Inside a callback the reply carries them.
    /// </summary>
    private Task WhenPushedAsync() => InCallback || _sender is null ? Task.CompletedTask : _sender.WhenFlushed();

    /// <summary>The gateway reported more bytes sent: a push held by the high-water mark may go.</summary>
    internal void OnBytesSentReported() => _sender?.Released();
}
