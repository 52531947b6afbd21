using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Bench.Floor;

/// <summary>
/// The floor with sockets (<c>--serve PORT</c>): the least a socket server can do and still give each read to a grain —
/// Kestrel's socket transport with the gateway's settings, and per read the copy out of the pipe, the pump's one call
/// (<c>IProtocolGrain.DataReceived</c> on the sample's <c>EchoGrain</c> in this process's silo) and the reply's bytes
/// written back. No clocks, no observer, no limits, no logs, no state machine: what the gateway would cost if all of
/// its own parts were free. The bench alternates it with the gateway (<c>--floor</c>).
/// </summary>
internal static class FloorEchoServer
{
    public static async Task RunAsync(int port)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.UseOrleans(silo => silo.UseLocalhostClustering(siloPort: 21212, gatewayPort: 21401));
        using var host = builder.Build();
        await host.StartAsync();
        var grains = host.Services.GetRequiredService<IGrainFactory>();
        var observer = grains.CreateObjectReference<ITransportObserver>(new NullObserver());

        var transport = new SocketTransportFactory(
            Options.Create(new SocketTransportOptions { NoDelay = true, WaitForDataBeforeAllocatingBuffer = true, UnsafePreferInlineScheduling = true }),
            host.Services.GetRequiredService<ILoggerFactory>());
        await using var listener = await transport.BindAsync(new IPEndPoint(IPAddress.Loopback, port));
        Console.WriteLine($"floor listening on {listener.EndPoint}");
        while (await listener.AcceptAsync() is { } connection)
        {
            _ = ServeAsync(connection, grains, observer);
        }
    }

    private static async Task ServeAsync(ConnectionContext connection, IGrainFactory grains, ITransportObserver observer)
    {
        await using var _ = connection;
        var id = $"floor/{connection.ConnectionId}";
        var grain = grains.GetGrain<IProtocolGrain>(GrainId.Create("echo", id));
        var local = connection.LocalEndPoint as IPEndPoint ?? new IPEndPoint(IPAddress.Loopback, 0);
        var remote = connection.RemoteEndPoint as IPEndPoint ?? new IPEndPoint(IPAddress.Loopback, 0);
        await grain.ConnectionMade(new ConnectionInfo(id, "floor", local, remote) { GrainType = "echo" }, observer);
        var input = connection.Transport.Input;
        var output = connection.Transport.Output;
        long sent = 0;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync();
                var buffer = result.Buffer;
                if (!buffer.IsEmpty)
                {
                    // Orleans keeps a call's argument past the call, so the bytes leave the pipe's pooled segment first.
                    var data = buffer.ToArray();
                    input.AdvanceTo(buffer.End);
                    var reply = await grain.DataReceived(data, sent);
                    if (reply.Batch is { } batch)
                    {
                        output.Write(batch.Data.Span);
                        sent += batch.Data.Length;
                        if ((await output.FlushAsync()).IsCompleted)
                        {
                            break;
                        }
                    }
                }
                else
                {
                    input.AdvanceTo(buffer.End);
                }

                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ConnectionResetException or OperationCanceledException)
        {
            // The peer went away: the bench's load ends its connections abruptly.
        }
        finally
        {
            await grain.ConnectionLost(ConnectionCloseReason.PeerClosed, null);
        }
    }
}
