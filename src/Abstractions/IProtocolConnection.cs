namespace OrleansProtocol;

/// <summary>
/// A live connection, addressable from any grain, silo code or external Orleans client: send to it, close it, abort
/// it. Implemented by every <c>ProtocolGrain</c>; the operations go through the grain's transport, so they are ordered
/// with the protocol's own writes. Get one with <c>ProtocolConnections.GetConnection</c>.
/// </summary>
[Alias("OrleansProtocol.IProtocolConnection")]
public interface IProtocolConnection : IGrainWithStringKey
{
    /// <summary>Writes <paramref name="data"/> to the peer (<c>Transport.Write</c>); dropped once the connection is closing.</summary>
    [Alias("Send")]
    Task Send([Immutable] byte[] data);

    /// <summary>Writes one frame (<c>Transport.WriteFrame</c>) on a framed connection.</summary>
    [Alias("SendFrame")]
    Task SendFrame([Immutable] byte[] frame);

    /// <summary>Flushes, then closes (<c>Transport.Close</c>).</summary>
    [Alias("Close")]
    Task Close();

    /// <summary>Resets the connection at once (<c>Transport.Abort</c>).</summary>
    [Alias("Abort")]
    Task Abort();

    /// <summary>The connection's info, or null when this grain has no live connection.</summary>
    [Alias("GetInfo")]
    Task<ConnectionInfo?> GetInfo();
}

/// <summary>
/// The live connections of one listener, cluster-wide (every silo's listener of that name registers here). Kept by the
/// connections' grains themselves: added after <c>ConnectionMade</c>, removed when the connection is lost, including
/// when its gateway's silo died.
/// </summary>
[Alias("OrleansProtocol.IConnectionDirectory")]
public interface IConnectionDirectory : IGrainWithStringKey
{
    /// <summary>Registers a live connection.</summary>
    [Alias("Add")]
    Task Add(ConnectionInfo connection);

    /// <summary>Forgets a connection.</summary>
    [Alias("Remove")]
    Task Remove(string connectionId);

    /// <summary>The live connections.</summary>
    [Alias("List")]
    Task<ConnectionInfo[]> List();

    /// <summary>The live connection with that id, or null.</summary>
    [Alias("Find")]
    Task<ConnectionInfo?> Find(string connectionId);
}
