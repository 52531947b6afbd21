namespace OrleansProtocol;

/// <summary>
/// Names understood by <c>GetExtraInfo</c>, spelled as asyncio spells them.
/// </summary>
public static class ExtraInfoKeys
{
    /// <summary>The peer's address: an <see cref="System.Net.IPEndPoint"/> (asyncio returns a (host, port) tuple).</summary>
    public const string PeerName = "peername";

    /// <summary>The gateway's local address of the socket: an <see cref="System.Net.IPEndPoint"/>.</summary>
    public const string SockName = "sockname";

    /// <summary>The connection id, a <see cref="string"/> (not in asyncio; handy in logs).</summary>
    public const string ConnectionId = "connection_id";

    /// <summary>The name of the listener that accepted the connection, a <see cref="string"/>.</summary>
    public const string ListenerName = "listener";
}
