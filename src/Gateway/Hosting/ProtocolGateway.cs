using System.Collections.Immutable;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Metadata;

namespace OrleansProtocol.Gateway;

/// <summary>
/// The silo's protocol gateway: the owner of every <see cref="ProtocolServer"/> in the silo. It starts the listeners
/// registered with <c>AddProtocolListener</c> once the silo is active, creates servers at run time
/// (<see cref="CreateServerAsync{TGrain}"/>, asyncio's <c>create_server</c>), and on silo stop drains and closes every
/// server — every connection's grain gets its <c>ConnectionLost</c> — before Orleans deactivates grains. The silo
/// lifecycle is the outer nursery.
/// </summary>
public sealed class ProtocolGateway : ILifecycleParticipant<ISiloLifecycle>
{
    // One stage after Active: starts strictly after Orleans' own Active work and stops strictly before it, while
    // grains and this silo's observers are still reachable.
    private const int LifecycleStage = ServiceLifecycleStage.Active + 1;

    private readonly IServiceProvider _services;
    private readonly ProtocolGatewayOptions _options;
    private readonly Lock _lock = new();
    private ImmutableList<ProtocolServer> _servers = [];
    private bool _started;
    private bool _stopping;

    /// <summary>Created by dependency injection; register with <c>AddProtocolGateway</c>.</summary>
    public ProtocolGateway(IServiceProvider services, IOptions<ProtocolGatewayOptions> options)
    {
        _services = services;
        _options = options.Value;
    }

    /// <summary>The servers of this silo, from startup and from run time, until they are disposed.</summary>
    public IReadOnlyList<ProtocolServer> Servers => _servers;

    /// <summary>The server named <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No server has that name.</exception>
    public ProtocolServer GetServer(string name) =>
        _servers.FirstOrDefault(s => s.Name == name) ?? throw new KeyNotFoundException($"No protocol server is named '{name}'.");

    /// <summary>
    /// Creates, binds and (unless <see cref="ProtocolListenerOptions.StartServing"/> is false) starts a server whose
    /// connections are each served by a new <typeparamref name="TGrain"/> activation (asyncio <c>create_server</c>).
    /// Call from silo code once the silo is active. The silo owns the server: stopping the silo drains it;
    /// disposing it earlier drains it then.
    /// </summary>
    /// <exception cref="InvalidOperationException">The silo is not active, or a server already has that name.</exception>
    /// <exception cref="OptionsValidationException">The options are invalid; the message lists every problem.</exception>
    public Task<ProtocolServer> CreateServerAsync<TGrain>(string name, Action<ProtocolListenerOptions> configure, CancellationToken cancellationToken = default)
        where TGrain : IProtocolGrain
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new ProtocolListenerOptions();
        configure(options);
        var validation = new ProtocolListenerOptionsValidator().Validate(name, options);
        if (validation.Failed)
        {
            throw new OptionsValidationException(name, typeof(ProtocolListenerOptions), validation.Failures);
        }

        lock (_lock)
        {
            if (!_started || _stopping)
            {
                throw new InvalidOperationException("Servers can be created only while the silo is active.");
            }
        }

        return AddServerAsync(name, typeof(TGrain), options, cancellationToken);
    }

    void ILifecycleParticipant<ISiloLifecycle>.Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(ProtocolGateway), LifecycleStage, StartAsync, StopAsync);

    private async Task StartAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            _started = true;
        }

        var listenerOptions = _services.GetRequiredService<IOptionsMonitor<ProtocolListenerOptions>>();
        foreach (var registration in _services.GetServices<ProtocolListenerRegistration>())
        {
            await AddServerAsync(registration.Name, registration.GrainClass, listenerOptions.Get(registration.Name), cancellationToken);
        }
    }

    private async Task<ProtocolServer> AddServerAsync(string name, Type grainClass, ProtocolListenerOptions options, CancellationToken cancellationToken)
    {
        var server = new ProtocolServer(
            name,
            options,
            _services.GetRequiredService<GrainTypeResolver>().GetGrainType(grainClass),
            _services.GetRequiredService<IGrainFactory>(),
            _services.GetRequiredService<ILoggerFactory>(),
            _options.DrainTimeout,
            Forget);
        lock (_lock)
        {
            if (_servers.Any(s => s.Name == name))
            {
                throw new InvalidOperationException($"A protocol server is already named '{name}'; server names must be unique.");
            }

            _servers = _servers.Add(server);
        }

        try
        {
            await server.BindAsync(cancellationToken);
        }
        catch
        {
            lock (_lock)
            {
                _servers = _servers.Remove(server);
            }

            throw;
        }

        _ = ForgetWhenClosedAsync(server);
        return server;
    }

    // A closed server stays until its last connection ends: the silo's stop must still drain it.
    private async Task ForgetWhenClosedAsync(ProtocolServer server)
    {
        await server.WaitClosed();
        Forget(server);
    }

    private void Forget(ProtocolServer server)
    {
        lock (_lock)
        {
            _servers = _servers.Remove(server);
        }
    }

    private Task StopAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            _stopping = true;
        }

        return Task.WhenAll(_servers.Select(s => s.ShutdownAsync(ConnectionCloseReason.ServerShutdown, _options.DrainTimeout, cancellationToken)));
    }
}

/// <summary>A listener added with <c>AddProtocolListener</c>: its name and the grain class serving it.</summary>
internal sealed record ProtocolListenerRegistration(string Name, Type GrainClass);
