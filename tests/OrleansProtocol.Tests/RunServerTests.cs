using System.Net;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using OrleansProtocol.Gateway;
using OrleansProtocol.Samples;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>The C# counterpart of <c>trio.run(run_server, MyStringReceiver, '127.0.0.1', 5566)</c>.</summary>
public sealed class RunServerTests
{
    [Fact]
    public async Task The_run_server_one_liner_serves_the_seed_example_logs_where_it_listens_and_stops_on_cancellation()
    {
        var logs = new CapturingLoggerProvider();
        using var stop = new CancellationTokenSource();
        var running = ProtocolHost.RunServerAsync<StringReceiverGrain>("127.0.0.1", 0, configureSilo: silo =>
        {
            silo.Services.AddSingleton<ILoggerProvider>(logs);
            silo.Configure<EndpointOptions>(o =>
            {
                o.SiloPort = TestPorts.Free();
                o.GatewayPort = TestPorts.Free();
            });
        }, cancellationToken: stop.Token);

        var listening = await logs.WaitForAsync(m => m.Contains(" serving "));
        var endPoint = IPEndPoint.Parse(Regex.Match(listening, @"on (\S+)$").Groups[1].Value);
        await using (var client = await TestClient.ConnectAsync(endPoint))
        {
            await client.SendAsync(StringReceiverTests.Frame("hello world\n"));
            Assert.Equal(StringReceiverTests.Frame("ok"), await client.ReadExactlyAsync(6));
        }

        await logs.WaitForAsync(m => m == "received string: hello world\n");
        stop.Cancel();
        await running.WaitAsync(TestTimeouts.Default);
        await logs.WaitForAsync(m => m.Contains("stopped accepting"));
    }
}
