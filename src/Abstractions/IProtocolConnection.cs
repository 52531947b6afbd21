using Orleans.Concurrency;

namespace OrleansProtocol;

/// <summary>
/// A live connection, addressable from any grain, silo code or external Orleans client: send to it, close it, abort
/// it. Implemented by every <c>ProtocolGrain</c>; the operations go through the grain's transport, so they are ordered
/// with the protocol's own writes. Get one with <c>ProtocolConnections.GetConnection</c>.
/// </summary>
/// <remarks>
/// <para>
/// <b>Calling a connection never deadlocks with that connection's callbacks, whatever the caller is awaiting.</b> Every
/// method here only records a transport operation, so every one is <see cref="AlwaysInterleaveAttribute"/>: it runs
/// between the awaits of a callback that is in progress, as another asyncio task writing to the same transport would.
/// A room grain may therefore write to a member whose own callback is awaiting that room, and a protocol may write to
/// the connection that is calling it.
/// </para>
/// <para>
/// A connection that is gone (closed, reset, its grain's silo died, or an id that never existed) answers
/// <see cref="Send"/> and <see cref="SendFrame"/> with a <see cref="ConnectionClosedException"/>, so a fan-out can drop
/// it; <see cref="Close"/> and <see cref="Abort"/> are idempotent and <see cref="GetInfo"/> returns null.
/// </para>
/// <para>
/// Fan out without letting one member fail or stall the others: keep an outbox per member, send from it one awaited
/// call at a time (that keeps each member's lines in order on any topology), and drop a member whose send throws
/// <see cref="ConnectionClosedException"/>. <c>ConnectionFanOut</c> (Grains library) does exactly that.
/// </para>
/// </remarks>
[Alias("OrleansProtocol.IProtocolConnection")]
public interface IProtocolConnection : IGrainWithStringKey
{
    /// <summary>
    /// Writes <paramref name="data"/> to the peer (<c>Transport.Write</c>). Completes once the bytes are on their way to
    /// the gateway and its write buffer is at or below the high-water mark: awaiting each send paces the caller to the
    /// peer (back-pressure). Dropped, as asyncio drops writes, while the connection is closing.
    /// </summary>
    /// <exception cref="ConnectionClosedException">The connection is gone.</exception>
    [AlwaysInterleave]
    [Alias("Send")]
    Task Send([Immutable] byte[] data);

    /// <summary>Writes one frame (<c>Transport.WriteFrame</c>) on a framed connection; completes as <see cref="Send"/>.</summary>
    /// <exception cref="ConnectionClosedException">The connection is gone.</exception>
    [AlwaysInterleave]
    [Alias("SendFrame")]
    Task SendFrame([Immutable] byte[] frame);

    /// <summary>Flushes, then closes (<c>Transport.Close</c>). Does nothing if the connection is already gone.</summary>
    [AlwaysInterleave]
    [Alias("Close")]
    Task Close();

    /// <summary>Resets the connection at once (<c>Transport.Abort</c>). Does nothing if the connection is already gone.</summary>
    [AlwaysInterleave]
    [Alias("Abort")]
    Task Abort();

    /// <summary>The connection's info, or null when this grain has no live connection.</summary>
    [AlwaysInterleave]
    [Alias("GetInfo")]
    Task<ConnectionInfo?> GetInfo();
}

/// <summary>
/// The live connections of one listener, cluster-wide. Nothing is registered per connection: every silo's gateway
/// knows its own connections, and a query asks every active silo's gateway and merges the answers, so the answer is
/// exactly the live connections, also after a silo failed. A stateless worker: callable from grains, silo code and
/// external clients alike. Use <c>ProtocolConnections.ListConnectionsAsync</c> / <c>FindConnectionAsync</c>.
/// </summary>
[Alias("OrleansProtocol.IConnectionDirectory")]
public interface IConnectionDirectory : IGrainWithStringKey
{
    /// <summary>The live connections of the listener this grain is keyed by, across every silo.</summary>
    [Alias("List")]
    Task<ConnectionInfo[]> List();

    /// <summary>The live connection with that id, or null.</summary>
    [Alias("Find")]
    Task<ConnectionInfo?> Find(string connectionId);

    /// <summary>The live connections of the listener with their gateways' figures (age, bytes, pauses), across every silo.</summary>
    [Alias("ListStatus")]
    Task<ConnectionStatus[]> ListStatus();
}
