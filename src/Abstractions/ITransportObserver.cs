namespace OrleansProtocol;

/// <summary>
/// The gateway's per-connection observer: the way back from a grain to the socket for writes made outside a
/// callback (timers, background tasks, calls from other grains).
/// </summary>
/// <remarks>
/// One method carries every transport operation (write, write EOF, close, abort, pause and resume reading, write
/// buffer limits) as a <see cref="TransportBatch"/>, so the gateway orders all of them by one sequence number. The
/// grain awaits each push before sending the next. The gateway's implementation only enqueues and never calls back
/// into the grain, so a grain awaiting it cannot deadlock with the gateway.
/// </remarks>
[Alias("OrleansProtocol.ITransportObserver")]
public interface ITransportObserver : IGrainObserver
{
    /// <summary>Apply <paramref name="batch"/> to the connection, in sequence order.</summary>
    /// <returns>The bytes handed to the socket so far, which keeps the grain's write-buffer count fresh between callbacks.</returns>
    [Alias("Send")]
    Task<long> Send(TransportBatch batch);
}
