namespace OrleansProtocol;

/// <summary>
/// Names understood by <c>GetExtraInfo</c>, spelled as asyncio spells them.
/// </summary>
public static class ExtraInfoKeys
{
    /// <summary>The peer's address: an <see cref="System.Net.IPEndPoint"/> (asyncio returns a (host, port) tuple); on a Unix socket a path <see cref="string"/>, empty for an unnamed client, as asyncio.</summary>
    public const string PeerName = "peername";

    /// <summary>The gateway's local address of the socket: an <see cref="System.Net.IPEndPoint"/>; on a Unix socket its path <see cref="string"/>.</summary>
    public const string SockName = "sockname";

    /// <summary>TLS only: the negotiated protocol version, a <see cref="string"/> such as <c>TLSv1.3</c> (asyncio <c>ssl_object.version()</c>).</summary>
    public const string SslProtocol = "ssl_protocol";

    /// <summary>TLS only: the cipher suite's IANA name, a <see cref="string"/> (asyncio gives a (name, version, bits) tuple).</summary>
    public const string Cipher = "cipher";

    /// <summary>TLS only: the peer's certificate, an <c>X509Certificate2</c>, or the default when it sent none.</summary>
    public const string PeerCert = "peercert";

    /// <summary>TLS only: the <see cref="TlsInfo"/> of the connection (asyncio's <c>ssl_object</c>; also answers <c>sslcontext</c>, so "is this TLS?" checks work).</summary>
    public const string SslObject = "ssl_object";

    /// <summary>Alias of <see cref="SslObject"/>: truthy on TLS connections, as uvicorn and aiohttp test it.</summary>
    public const string SslContext = "sslcontext";

    /// <summary>The connection id, a <see cref="string"/> (not in asyncio; handy in logs).</summary>
    public const string ConnectionId = "connection_id";

    /// <summary>The name of the listener that accepted the connection, a <see cref="string"/>.</summary>
    public const string ListenerName = "listener";
}
