using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Metadata;

namespace OrleansProtocol.Gateway;

/// <summary>
/// The silo's protocol gateway: it starts every registered listener once the silo is active, and on silo stop it
/// stops accepting and closes every connection (each grain gets its <c>ConnectionLost</c>) before Orleans deactivates
/// grains — the silo lifecycle is the nursery of the listeners and their connections.
/// </summary>
public sealed class ProtocolGateway : ILifecycleParticipant<ISiloLifecycle>
{
    // One stage after Active: starts strictly after Orleans' own Active work and stops strictly before it, while
    // grains and this silo's observers are still reachable.
    private const int LifecycleStage = ServiceLifecycleStage.Active + 1;

    private readonly IServiceProvider _services;
    private readonly ProtocolGatewayOptions _options;
    private readonly List<ProtocolServer> _servers = [];

    /// <summary>Created by dependency injection; register with <c>AddProtocolGateway</c>.</summary>
    public ProtocolGateway(IServiceProvider services, IOptions<ProtocolGatewayOptions> options)
    {
        _services = services;
        _options = options.Value;
    }

    /// <summary>The running listeners.</summary>
    public IReadOnlyList<ProtocolServer> Servers => _servers;

    /// <summary>The listener registered as <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No listener has that name.</exception>
    public ProtocolServer GetServer(string name) =>
        _servers.FirstOrDefault(s => s.Name == name) ?? throw new KeyNotFoundException($"No protocol listener is named '{name}'.");

    void ILifecycleParticipant<ISiloLifecycle>.Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(ProtocolGateway), LifecycleStage, StartAsync, StopAsync);

    private async Task StartAsync(CancellationToken cancellationToken)
    {
        var registrations = _services.GetServices<ProtocolListenerRegistration>().ToList();
        var duplicate = registrations.GroupBy(r => r.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new InvalidOperationException($"Two protocol listeners are named '{duplicate.Key}'; listener names must be unique.");
        }

        var grainTypes = _services.GetRequiredService<GrainTypeResolver>();
        var grainFactory = _services.GetRequiredService<IGrainFactory>();
        var loggerFactory = _services.GetRequiredService<ILoggerFactory>();
        var listenerOptions = _services.GetRequiredService<IOptionsMonitor<ProtocolListenerOptions>>();
        foreach (var registration in registrations)
        {
            var server = new ProtocolServer(
                registration.Name,
                listenerOptions.Get(registration.Name),
                grainTypes.GetGrainType(registration.GrainClass),
                grainFactory,
                loggerFactory);
            await server.StartAsync(cancellationToken);
            _servers.Add(server);
        }
    }

    private Task StopAsync(CancellationToken cancellationToken) =>
        Task.WhenAll(_servers.Select(s => s.StopAsync(_options.DrainTimeout, cancellationToken)));
}

/// <summary>A listener added with <c>AddProtocolListener</c>: its name and the grain class serving it.</summary>
internal sealed record ProtocolListenerRegistration(string Name, Type GrainClass);
