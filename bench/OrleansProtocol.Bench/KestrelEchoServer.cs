using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace OrleansProtocol.Bench;

/// <summary>
/// A Kestrel <see cref="ConnectionHandler"/> echo: the transport the gateway is built on, with nothing of the gateway's
/// own (no grain, no observer, no clocks) — what the gateway would cost if it were free.
/// </summary>
internal static class KestrelEchoServer
{
    public static async Task RunAsync(int port)
    {
        if (port == 0)
        {
            // Kestrel reports no bound port for a non-HTTP endpoint: take a free one first (the bench's machine only).
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            port = ((IPEndPoint)probe.LocalEndPoint!).Port;
        }

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port, l => l.UseConnectionHandler<EchoHandler>()));
        await using var app = builder.Build();
        await app.StartAsync();
        Console.WriteLine($"kestrel listening on 127.0.0.1:{port}");
        await app.WaitForShutdownAsync();
    }

    private sealed class EchoHandler : ConnectionHandler
    {
        public override async Task OnConnectedAsync(ConnectionContext connection)
        {
            // As the gateway's sockets: Nagle off.
            if (connection.Features.Get<Microsoft.AspNetCore.Connections.Features.IConnectionSocketFeature>()?.Socket is { } socket)
            {
                socket.NoDelay = true;
            }

            var input = connection.Transport.Input;
            var output = connection.Transport.Output;
            while (true)
            {
                var result = await input.ReadAsync();
                var buffer = result.Buffer;
                foreach (var segment in buffer)
                {
                    output.Write(segment.Span);
                }

                input.AdvanceTo(buffer.End);
                var flushed = await output.FlushAsync();
                if (result.IsCompleted || flushed.IsCompleted)
                {
                    break;
                }
            }
        }
    }
}
