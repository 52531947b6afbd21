using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Gateway;

/// <summary>One-call hosting, the counterpart of trio-protocol's <c>run_server</c>.</summary>
public static class ProtocolHost
{
    /// <summary>
    /// Starts an embedded single silo serving <typeparamref name="TGrain"/> on <paramref name="host"/>:<paramref name="port"/>,
    /// logs where it listens (<c>Listener {name} serving {grain type} on {address}</c>), and runs until Ctrl+C, SIGTERM
    /// or <paramref name="cancellationToken"/>, then shuts down gracefully (the connections are drained). The C# for
    /// <c>trio.run(run_server, MyStringReceiver, '127.0.0.1', 5566)</c>:
    /// <code>await ProtocolHost.RunServerAsync&lt;StringReceiverGrain&gt;("127.0.0.1", 5566);</code>
    /// </summary>
    /// <remarks>
    /// The listener is named after the grain class (<c>typeof(TGrain).Name</c>), so its connection ids start with that
    /// name. The silo uses localhost clustering on Orleans' default ports, 11111 (silo to silo) and 30000 (clients),
    /// both on the loopback interface; run a second one on the same machine with other ports through
    /// <paramref name="configureSilo"/> (<c>silo.UseLocalhostClustering(siloPort: 11112, gatewayPort: 30001)</c>).
    /// </remarks>
    /// <param name="host">Address(es) to bind, as <see cref="ProtocolListenerOptions.Host"/>.</param>
    /// <param name="port">TCP port; 0 picks a free one (logged).</param>
    /// <param name="configureListener">Optional listener settings (framing, TLS, limits), applied after host and port.</param>
    /// <param name="configureSilo">Optional further silo configuration (ports, clustering, more listeners).</param>
    /// <param name="cancellationToken">Stops the server when cancelled.</param>
    public static async Task RunServerAsync<TGrain>(
        string host,
        int port,
        Action<ProtocolListenerOptions>? configureListener = null,
        Action<ISiloBuilder>? configureSilo = null,
        CancellationToken cancellationToken = default)
        where TGrain : IProtocolGrain
    {
        var builder = Host.CreateApplicationBuilder();

        // The listener's "serving ... on ..." line is the one a user needs; Orleans' own Information is chatty.
        builder.Logging.AddFilter("Orleans", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Information);
        builder.Logging.AddFilter("Polly", LogLevel.Warning);
        builder.Logging.AddFilter("OrleansProtocol", LogLevel.Information);
        builder.UseOrleans(silo =>
        {
            silo.UseLocalhostClustering();
            silo.AddProtocolListener<TGrain>(typeof(TGrain).Name, o =>
            {
                o.Host = host;
                o.Port = port;
                configureListener?.Invoke(o);
            });
            configureSilo?.Invoke(silo);
        });

        using var app = builder.Build();
        await app.RunAsync(cancellationToken);
    }
}
