using System.Net;

namespace OrleansProtocol;

/// <summary>
/// What the gateway knows about a connection when it hands it to a grain.
/// </summary>
/// <param name="ConnectionId">
/// Unique id of the connection, <c>"{listener}/{guid}"</c>; also the key of its grain. Never derived from ip:port, which
/// the OS reuses.
/// </param>
/// <param name="ListenerName">Name of the listener (server) that accepted the connection.</param>
/// <param name="LocalEndPoint">The gateway's end of the socket (asyncio's <c>sockname</c>).</param>
/// <param name="RemoteEndPoint">The peer's end of the socket (asyncio's <c>peername</c>).</param>
[GenerateSerializer, Immutable, Alias("OrleansProtocol.ConnectionInfo")]
public sealed record ConnectionInfo(
    [property: Id(0)] string ConnectionId,
    [property: Id(1)] string ListenerName,
    [property: Id(2)] IPEndPoint? LocalEndPoint,
    [property: Id(3)] IPEndPoint? RemoteEndPoint)
{
    /// <summary>How the listener frames the stream; <see cref="FrameFormat.Raw"/> unless the listener is framed.</summary>
    [Id(4)]
    public FrameFormat Framing { get; init; } = FrameFormat.Raw;

    /// <summary>What TLS negotiated, or null on a plain connection.</summary>
    [Id(5)]
    public TlsInfo? Tls { get; init; }

    /// <summary>The Orleans grain type serving the connection (with <see cref="ConnectionId"/>, the grain's identity).</summary>
    [Id(6)]
    public string? GrainType { get; init; }

    /// <summary>The silo holding the socket, as <c>SiloAddress.ToParsableString()</c>.</summary>
    [Id(7)]
    public string? GatewaySilo { get; init; }

    /// <summary>
    /// The listener's hard cap on bytes buffered for the peer (<c>MaxWriteBufferSize</c>), or null for none. The grain's
    /// transport enforces it as well, so a protocol writing far past it in one turn is stopped before it holds the bytes.
    /// </summary>
    [Id(8)]
    public long? MaxWriteBufferSize { get; init; }

    /// <summary>
    /// After <c>SetProtocol</c>: bytes an earlier protocol wrote that were still buffered when this one took over. The
    /// transport is shared, so they count in this protocol's write buffer size, as in asyncio.
    /// </summary>
    [Id(9)]
    public long InheritedWriteBufferSize { get; init; }

    /// <summary>
    /// On a Unix domain socket: this end's path, as asyncio's <c>sockname</c> (the listener's socket file on a server
    /// connection, empty on a client one); null on TCP, where <see cref="LocalEndPoint"/> says it.
    /// </summary>
    [Id(10)]
    public string? LocalPath { get; init; }

    /// <summary>
    /// On a Unix domain socket: the peer's path, as asyncio's <c>peername</c> (empty on a server connection, whose
    /// clients are unnamed; the socket file connected to on a client one); null on TCP.
    /// </summary>
    [Id(11)]
    public string? RemotePath { get; init; }
}

/// <summary>What TLS negotiated on a connection (asyncio's <c>ssl_object</c> details).</summary>
/// <param name="Protocol">The protocol version, as asyncio names it: <c>TLSv1.2</c>, <c>TLSv1.3</c>.</param>
/// <param name="Cipher">The cipher suite's IANA name, e.g. <c>TLS_AES_256_GCM_SHA384</c>.</param>
/// <param name="PeerCertificate">The peer's certificate (DER), when it presented one.</param>
[GenerateSerializer, Immutable, Alias("OrleansProtocol.TlsInfo")]
public sealed record TlsInfo(
    [property: Id(0)] string Protocol,
    [property: Id(1)] string Cipher,
    [property: Id(2)] byte[]? PeerCertificate);
