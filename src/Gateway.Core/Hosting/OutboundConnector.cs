using System.Net.Security;
using System.Net.Sockets;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Orleans.Metadata;
using OrleansProtocol.Gateway.Connections;

namespace OrleansProtocol.Gateway;

/// <summary>
/// asyncio's <c>create_connection</c>: connects a socket, makes it a connection of the silo's outbound server (a
/// server that never listens, so outbound connections are tracked, limited and drained as accepted ones are) and
/// waits for its grain's <c>ConnectionMade</c>.
/// </summary>
internal sealed class OutboundConnector(ProtocolServer outbound, GrainTypeResolver grainTypes, ConnectionSiting siting, GatewayServices services)
    : IDisposable
{
    private readonly SocketConnectionContextFactory _contexts = new(
        new SocketConnectionFactoryOptions { WaitForDataBeforeAllocatingBuffer = true, UnsafePreferInlineScheduling = true },
        services.LoggerFactory.CreateLogger<SocketConnectionContextFactory>());

    /// <summary>The server outbound connections belong to.</summary>
    public ProtocolServer Server => outbound;

    public async Task<ConnectionInfo> ConnectAsync(
        ConnectRequest request, Type grainClass, ProtocolListenerOptions options, RemoteCertificateValidationCallback? validateServerCertificate, CancellationToken cancellationToken)
    {
        var socket = request.UnixSocketPath is null
            ? new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true }
            : new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(request.ConnectTimeout);
            try
            {
                await (request.UnixSocketPath is { } path
                    ? socket.ConnectAsync(new UnixDomainSocketEndPoint(path), timeout.Token)
                    : socket.ConnectAsync(request.Host, request.Port, timeout.Token));
            }
            catch (SocketException ex)
            {
                throw new ProtocolConnectException($"Could not connect to {request.Target}: {ex.SocketErrorCode} ({ex.Message}).", ex.SocketErrorCode);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new ProtocolConnectException($"Could not connect to {request.Target}: no answer within {request.ConnectTimeout}.", SocketError.TimedOut);
            }
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        // Each outbound connection is a listener of its own, named after its target (its id, metrics and logs say so).
        var listener = new ListenerContext($"outbound:{request.Target}", grainTypes.GetGrainType(grainClass), options, siting, services);
        var connection = new GatewayConnection(_contexts.Create(socket), listener);
        if (request.Tls is { } tls)
        {
            connection.UseClientTls(
                new SslClientAuthenticationOptions
                {
                    TargetHost = tls.ServerName,
                    RemoteCertificateValidationCallback = validateServerCertificate
                        ?? (tls.AllowUntrustedCertificate ? (_, _, _, _) => true : null),
                },
                request.ConnectTimeout);
        }

        outbound.Adopt(connection);
        if (!await connection.Made)
        {
            throw new ProtocolConnectException(
                connection.HandshakeError is { } handshake
                    ? $"Connected to {request.Target}, but {handshake}"
                    : $"Connected to {request.Target}, but the connection ended before its grain's ConnectionMade completed.",
                SocketError.ConnectionAborted);
        }

        return connection.Info;
    }

    public void Dispose() => _contexts.Dispose();
}
