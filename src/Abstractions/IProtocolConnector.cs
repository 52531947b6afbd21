using System.Net.Sockets;
using OrleansProtocol.Wire;

namespace OrleansProtocol;

/// <summary>
/// Opens outbound TCP connections served by protocol grains (asyncio <c>create_connection</c>). Reachable from any
/// grain, from silo code and from an external Orleans client: the call is served by the gateway of the silo it lands
/// on (a stateless worker, so the caller's own silo when it has a gateway).
/// </summary>
[Alias("OrleansProtocol.IProtocolConnector")]
public interface IProtocolConnector : IGrainWithIntegerKey
{
    /// <summary>
    /// Connects, then gives the connection to a new grain of <see cref="ConnectRequest.ProtocolClass"/> and returns once
    /// its <c>ConnectionMade</c> has run.
    /// </summary>
    /// <exception cref="ProtocolConnectException">Refused, unreachable or timed out; no grain or socket is left behind.</exception>
    [Alias("Connect")]
    Task<ConnectionInfo> Connect(ConnectRequest request);
}

/// <summary>What to connect to, and which protocol serves the connection.</summary>
/// <param name="Host">Host name or IP address.</param>
/// <param name="Port">TCP port.</param>
/// <param name="ProtocolClass">The protocol grain class, as <c>"Namespace.Type, Assembly"</c> (see <see cref="For{TGrain}"/>).</param>
[GenerateSerializer, Immutable, Alias("OrleansProtocol.ConnectRequest")]
public sealed record ConnectRequest(
    [property: Id(0)] string Host,
    [property: Id(1)] int Port,
    [property: Id(2)] string ProtocolClass)
{
    /// <summary>How long to wait for the TCP handshake. Defaults to 10 seconds.</summary>
    [Id(3)]
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Framing of the connection; raw by default.</summary>
    [Id(4)]
    public FrameFormat Framing { get; init; } = FrameFormat.Raw;

    /// <summary>TLS for the connection, or null for plain TCP.</summary>
    [Id(5)]
    public ClientTls? Tls { get; init; }

    /// <summary>
    /// Connect to the Unix domain socket at this path instead of <see cref="Host"/>:<see cref="Port"/> (asyncio
    /// <c>create_unix_connection</c>); the connection reports it as <c>peername</c>. Null for TCP.
    /// </summary>
    [Id(6)]
    public string? UnixSocketPath { get; init; }

    /// <summary>Where the request connects to, for messages: <c>host:port</c> or <c>unix:path</c>.</summary>
    public string Target => UnixSocketPath is { } path ? $"unix:{path}" : $"{Host}:{Port}";

    /// <summary>A request for <typeparamref name="TGrain"/> to serve a connection to the Unix domain socket at <paramref name="path"/>.</summary>
    public static ConnectRequest ForUnix<TGrain>(string path)
        where TGrain : IProtocolGrain =>
        For<TGrain>("", 0) with { UnixSocketPath = path };

    /// <summary>A request for <typeparamref name="TGrain"/> to serve a connection to <paramref name="host"/>:<paramref name="port"/>.</summary>
    public static ConnectRequest For<TGrain>(string host, int port)
        where TGrain : IProtocolGrain =>
        new(host, port, $"{typeof(TGrain).FullName}, {typeof(TGrain).Assembly.GetName().Name}");
}

/// <summary>An outbound connection could not be made.</summary>
[GenerateSerializer, Alias("OrleansProtocol.ProtocolConnectException")]
public sealed class ProtocolConnectException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ProtocolConnectException(string message, SocketError socketError, Exception? innerException = null)
        : base(message, innerException)
    {
        SocketError = socketError;
    }

    /// <summary>The socket error: <c>ConnectionRefused</c>, <c>HostUnreachable</c>, <c>TimedOut</c>, …</summary>
    [Id(0)]
    public SocketError SocketError { get; }
}

/// <summary>TLS settings of an outbound connection.</summary>
/// <param name="ServerName">The name to ask for (SNI) and to validate the server's certificate against.</param>
[GenerateSerializer, Immutable, Alias("OrleansProtocol.ClientTls")]
public sealed record ClientTls([property: Id(0)] string ServerName)
{
    /// <summary>
    /// Accept a server certificate the operating system does not trust (self-signed, wrong name). For development and
    /// tests; silo code can pass a validation callback to <c>ProtocolGateway.ConnectAsync</c> instead.
    /// </summary>
    [Id(1)]
    public bool AllowUntrustedCertificate { get; init; }
}
