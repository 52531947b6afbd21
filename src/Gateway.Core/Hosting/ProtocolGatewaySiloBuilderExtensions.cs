using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using OrleansProtocol;
using OrleansProtocol.Gateway;
using OrleansProtocol.Wire;

namespace Orleans.Hosting;

/// <summary>Registers the protocol gateway and its listeners in a silo.</summary>
public static class ProtocolGatewaySiloBuilderExtensions
{
    /// <summary>
    /// Adds the protocol gateway to the silo. <see cref="AddProtocolListener{TGrain}"/> calls this; call it yourself
    /// to change gateway-wide settings.
    /// </summary>
    public static ISiloBuilder AddProtocolGateway(this ISiloBuilder builder, Action<ProtocolGatewayOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        var options = services.AddOptions<ProtocolGatewayOptions>().ValidateOnStart();
        if (configure is not null)
        {
            options.Configure(configure);
        }

        services.TryAddSingleton<ProtocolGateway>();
        services.AddMetrics();
        services.TryAddSingleton<OrleansProtocol.Gateway.Diagnostics.GatewayMetrics>();
        services.TryAddSingleton<OrleansProtocol.Diagnostics.ConnectionGrainCounters>();
        services.TryAddSingleton<GatewayWatch>();

        // The connection directory asks every silo's gateway: one registry grain service per silo.
        if (!services.Any(d => d.ServiceType == typeof(IConnectionRegistryClient)))
        {
            services.AddGrainService<OrleansProtocol.Gateway.Connections.ConnectionRegistryService>();
            services.AddSingleton<IConnectionRegistryClient, ConnectionRegistryClient>();
        }

        // Groups are delivered by every silo's gateway to its own members: one group grain service per silo.
        if (!services.Any(d => d.ServiceType == typeof(IGroupGatewayClient)))
        {
            services.AddGrainService<OrleansProtocol.Gateway.Groups.GroupGatewayService>();
            services.AddSingleton<IGroupGatewayClient, GroupGatewayClient>();
            services.AddSingleton<GroupLanes>();
        }

        services.TryAddEnumerable(ServiceDescriptor.Singleton<ILifecycleParticipant<ISiloLifecycle>, ProtocolGatewayParticipant>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<ProtocolGatewayOptions>, ProtocolGatewayOptionsValidator>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<ProtocolListenerOptions>, ProtocolListenerOptionsValidator>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<DatagramEndpointOptions>, DatagramEndpointOptionsValidator>());
        return builder;
    }

    /// <summary>
    /// Adds a listener named <paramref name="name"/> whose connections are each served by a new
    /// <typeparamref name="TGrain"/> activation (asyncio <c>create_server(protocol_factory, host, port)</c>).
    /// </summary>
    /// <typeparam name="TGrain">The protocol: a grain class implementing <see cref="IProtocolGrain"/>, usually a <see cref="ProtocolGrain"/>.</typeparam>
    public static ISiloBuilder AddProtocolListener<TGrain>(this ISiloBuilder builder, string name, Action<ProtocolListenerOptions> configure)
        where TGrain : IProtocolGrain
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(configure);
        builder.AddProtocolGateway();
        builder.Services.AddSingleton(new ProtocolListenerRegistration(name, typeof(TGrain)));
        builder.Services.AddOptions<ProtocolListenerOptions>(name).Configure(configure).ValidateOnStart();
        return builder;
    }

    /// <summary>
    /// Adds a UDP endpoint named <paramref name="name"/> served by <typeparamref name="TGrain"/>: one grain per remote
    /// peer by default, or one for the endpoint (asyncio <c>create_datagram_endpoint</c>).
    /// </summary>
    public static ISiloBuilder AddDatagramEndpoint<TGrain>(this ISiloBuilder builder, string name, Action<DatagramEndpointOptions> configure)
        where TGrain : IDatagramGrain
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(configure);
        builder.AddProtocolGateway();
        builder.Services.AddSingleton(new DatagramEndpointRegistration(name, typeof(TGrain)));
        builder.Services.AddOptions<DatagramEndpointOptions>(name).Configure(configure).ValidateOnStart();
        return builder;
    }

    // The gateway is resolved lazily so its lifecycle registration shares the singleton users can resolve.
    private sealed class ProtocolGatewayParticipant(ProtocolGateway gateway) : ILifecycleParticipant<ISiloLifecycle>
    {
        public void Participate(ISiloLifecycle lifecycle) => ((ILifecycleParticipant<ISiloLifecycle>)gateway).Participate(lifecycle);
    }
}
