using Orleans.Concurrency;

namespace OrleansProtocol.Wire;

/// <summary>
/// A gateway's way back from grains to its sockets for operations made outside a callback (timers, background work,
/// calls from other grains). One per silo, shared by all of that silo's connections: it finds the connection by the
/// pushing grain's id, so a connection costs no observer registration of its own.
/// </summary>
/// <remarks>
/// One method carries every transport operation (write, write EOF, close, abort, pause and resume reading, write
/// buffer limits) as a <see cref="TransportBatch"/>, so the gateway orders all of them by one sequence number. The
/// grain awaits each push before sending the next. The gateway's implementation only enqueues and never calls back
/// into the grain, so a grain awaiting it cannot deadlock with the gateway; it interleaves, so one connection's push
/// never waits for another's.
/// </remarks>
[Alias("OrleansProtocol.ITransportObserver")]
public interface ITransportObserver : IGrainObserver
{
    /// <summary>Apply <paramref name="batch"/> to the connection of <paramref name="grain"/>, in sequence order.</summary>
    /// <returns>The bytes handed to the socket so far, which keeps the grain's write-buffer count fresh between callbacks.</returns>
    /// <exception cref="ConnectionClosedException">The gateway no longer has that connection (it ended).</exception>
    [AlwaysInterleave]
    [Alias("Send")]
    Task<long> Send(GrainId grain, TransportBatch batch);
}
