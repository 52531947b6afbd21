using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Text;
using Microsoft.AspNetCore.Connections;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;
using OrleansProtocol.Tests.Infrastructure;
using OrleansProtocol.Tests.TestGrains;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Tests;

/// <summary>
/// Listeners with <see cref="ProtocolListenerOptions.InMemory"/>: the same gateway code on pipe pairs — echo,
/// half-close, reset both ways, framing, per-address limits, write flow control — with no port.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class InMemoryTransportTests(GatewayClusterFixture fixture)
{
    private Task<ProtocolServer> ServerAsync<TGrain>(Action<ProtocolListenerOptions>? configure = null)
        where TGrain : IProtocolGrain =>
        fixture.Gateway.CreateServerAsync<TGrain>($"memory-{Guid.NewGuid():N}", o =>
        {
            o.InMemory = true;
            configure?.Invoke(o);
        });

    private static async Task<string> ReadLineAsync(PipeReader input)
    {
        while (true)
        {
            var result = await input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Default);
            if (result.Buffer.PositionOf((byte)'\n') is { } end)
            {
                var line = Encoding.UTF8.GetString(result.Buffer.Slice(0, end));
                input.AdvanceTo(result.Buffer.GetPosition(1, end));
                return line;
            }

            Assert.False(result.IsCompleted, "the server closed before a whole line");
            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    private static async Task<byte[]> ReadToEndAsync(PipeReader input)
    {
        while (true)
        {
            var result = await input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Default);
            if (result.IsCompleted)
            {
                var all = result.Buffer.ToArray();
                input.AdvanceTo(result.Buffer.End);
                return all;
            }

            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    [Fact]
    public async Task An_in_memory_listener_binds_no_port_and_echoes_then_closes_after_the_clients_half_close()
    {
        await using var server = await ServerAsync<EchoGrain>();
        Assert.True(server.IsServing);

        var client = server.ConnectInMemory();
        await client.Output.WriteAsync("hello\n"u8.ToArray());
        Assert.Equal("hello", await ReadLineAsync(client.Input));

        // write_eof: EchoGrain lets asyncio's default close the connection; the client sees the server's FIN.
        client.WriteEof();
        Assert.Empty(await ReadToEndAsync(client.Input));
        await Poll.UntilAsync(() => server.ConnectionCount == 0);
    }

    [Fact]
    public async Task A_client_reset_and_a_server_abort_each_end_the_connection_once_as_a_reset()
    {
        await using var server = await ServerAsync<ScriptGrain>();

        var resetting = server.ConnectInMemory();
        var resettingRecord = await fixture.Recorder.ForClientAsync(resetting.LocalEndPoint);
        resetting.Reset();
        await fixture.Recorder.WaitUntilAsync(() => resettingRecord.Count("CL") == 1);
        Assert.Equal(ConnectionCloseReason.PeerReset, resettingRecord.LostReason);

        var aborted = server.ConnectInMemory();
        var abortedRecord = await fixture.Recorder.ForClientAsync(aborted.LocalEndPoint);
        await aborted.Output.WriteAsync("abort-after 10\n"u8.ToArray());
        await Assert.ThrowsAsync<ConnectionResetException>(() => ReadToEndAsync(aborted.Input));
        await fixture.Recorder.WaitUntilAsync(() => abortedRecord.Count("CL") == 1);
        Assert.Equal(ConnectionCloseReason.LocalAbort, abortedRecord.LostReason);
    }

    [Fact]
    public async Task Framing_and_the_per_address_limit_apply_to_in_memory_connections_as_to_sockets()
    {
        await using var server = await ServerAsync<FrameEchoGrain>(o =>
        {
            o.Framing = new FramingOptions { Kind = FramingKind.Line, MaxFrameSize = 100 };
            o.MaxConnectionsPerAddress = 1;
        });

        var client = server.ConnectInMemory(new IPEndPoint(IPAddress.Parse("192.0.2.7"), 40000));
        await client.Output.WriteAsync("one\ntw"u8.ToArray());
        await client.Output.WriteAsync("o\n"u8.ToArray());
        Assert.Equal("one", await ReadLineAsync(client.Input));
        Assert.Equal("two", await ReadLineAsync(client.Input));

        // A second client from the same address is refused (reset, as a socket is); one from another address is served.
        var sameAddress = server.ConnectInMemory(new IPEndPoint(IPAddress.Parse("192.0.2.7"), 40001));
        await Assert.ThrowsAsync<ConnectionResetException>(() => ReadToEndAsync(sameAddress.Input));
        var otherAddress = server.ConnectInMemory(new IPEndPoint(IPAddress.Parse("192.0.2.8"), 40000));
        await otherAddress.Output.WriteAsync("three\n"u8.ToArray());
        Assert.Equal("three", await ReadLineAsync(otherAddress.Input));
        Assert.Equal(1, server.RefusedConnections);
    }

    [Fact]
    public async Task A_client_that_does_not_read_makes_the_protocol_pause_writing_and_reading_resumes_it()
    {
        await using var server = await ServerAsync<ScriptGrain>();
        var client = server.ConnectInMemory();
        var record = await fixture.Recorder.ForClientAsync(client.LocalEndPoint);

        // 1 MiB for a client that reads nothing yet: past the pipe's 64 KiB and the 64 KiB high-water mark.
        await client.Output.WriteAsync("stream 1048576\n"u8.ToArray());
        await fixture.Recorder.WaitUntilAsync(() => record.Count("PW") == 1);

        long read = 0;
        while (read < 1024 * 1024)
        {
            var result = await client.Input.ReadAsync().AsTask().WaitAsync(TestTimeouts.Default);
            read += result.Buffer.Length;
            client.Input.AdvanceTo(result.Buffer.End);
        }

        await fixture.Recorder.WaitUntilAsync(() => record.Count("RW") >= 1);
    }

    [Fact]
    public async Task A_PROXY_header_then_TLS_run_over_an_in_memory_connection_as_over_a_socket()
    {
        await using var server = await ServerAsync<ScriptGrain>(o =>
        {
            o.ProxyProtocol = true;
            o.ProxyTrustedNetworks = "127.0.0.0/8";
            o.Tls.CertificatePath = fixture.CertificatePath;
        });
        var client = server.ConnectInMemory();
        await client.Output.WriteAsync("PROXY TCP4 203.0.113.7 10.0.0.1 51234 7000\r\n"u8.ToArray());

        await using var tls = new SslStream(client.AsStream(), leaveInnerStreamOpen: false, (_, _, _, _) => true);
        await tls.AuthenticateAsClientAsync("localhost").WaitAsync(TestTimeouts.Default);
        await tls.WriteAsync("extra\n"u8.ToArray());
        var reader = new StreamReader(tls);
        Assert.StartsWith("203.0.113.7:51234 ", await reader.ReadLineAsync().WaitAsync(TestTimeouts.Default));
        await tls.WriteAsync("tls\n"u8.ToArray());
        Assert.Matches("^TLSv1\\.[23] ", await reader.ReadLineAsync().WaitAsync(TestTimeouts.Default));
    }

    [Fact]
    public async Task A_thousand_in_memory_connections_closed_reset_and_refused_give_back_every_place()
    {
        await using var server = await ServerAsync<EchoGrain>(o => o.MaxConnectionsPerAddress = 1);
        var budgetBefore = fixture.Gateway.BudgetedConnections;
        await Parallel.ForAsync(0, 1000, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, cancellation) =>
        {
            var address = new IPAddress([10, 1, (byte)(i / 256), (byte)(i % 256)]);
            var client = server.ConnectInMemory(new IPEndPoint(address, 1000));
            await client.Output.WriteAsync("x\n"u8.ToArray(), cancellation);
            Assert.Equal("x", await ReadLineAsync(client.Input));
            switch (i % 3)
            {
                case 0:
                    client.WriteEof();
                    Assert.Empty(await ReadToEndAsync(client.Input));
                    break;
                case 1:
                    client.Reset();
                    break;
                default:
                    // A second client from the same address is refused while the first is open.
                    var refused = server.ConnectInMemory(new IPEndPoint(address, 1001));
                    await Assert.ThrowsAsync<ConnectionResetException>(() => ReadToEndAsync(refused.Input));
                    await client.DisposeAsync();
                    break;
            }
        });

        await Poll.UntilAsync(
            () => server.ConnectionCount == 0 && server.CountedAddresses == 0 && fixture.Gateway.BudgetedConnections == budgetBefore,
            () => $"connections {server.ConnectionCount}, counted addresses {server.CountedAddresses}, silo budget {fixture.Gateway.BudgetedConnections} (was {budgetBefore})");
        Assert.Equal(333, server.RefusedConnections);
    }
}
