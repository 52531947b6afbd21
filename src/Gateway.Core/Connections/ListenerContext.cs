using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using OrleansProtocol.Framing;
using OrleansProtocol.Gateway.Diagnostics;
using OrleansProtocol.Wire;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>
/// What every connection of one listener shares: its settings, the constants made from them once (the refusal
/// message's bytes, the frame format, the clocks' limits) and the services a connection uses. A connection takes this
/// and its socket, and little else (as Kestrel's <c>ServiceContext</c> and Orleans' <c>ConnectionCommon</c>).
/// </summary>
internal sealed class ListenerContext
{
    public ListenerContext(
        string name,
        GrainType grainType,
        ProtocolListenerOptions options,
        ConnectionSiting siting,
        GatewayServices services,
        X509Certificate2? certificate = null)
    {
        Name = name;
        GrainType = grainType;
        GrainTypeName = grainType.ToString();
        Options = options;
        Services = services;
        Siting = siting;
        Certificate = certificate;
        RefusalMessage = options.RefusalMessage is { Length: > 0 } refusal ? System.Text.Encoding.UTF8.GetBytes(refusal) : [];
        Framing = options.Framing.ToFormat();

        // The backstop for a decoder that does not decide TooLarge from its headers: a frame's bytes plus its header.
        MaxBufferedFrame = Framing.MaxFrameSize + 16L + (Framing.Delimiter?.Length ?? 0);
        ClockLimits = ConnectionClock.Limits.From(options);
        Proxy = options.ProxyProtocol ? (options.TrustedNetworks, options.ProxyHeaderTimeout) : null;
    }

    /// <summary>The listener's name: the front of every connection id, the tag on every metric.</summary>
    public string Name { get; }

    public GrainType GrainType { get; }

    /// <summary><see cref="GrainType"/> as <see cref="ConnectionInfo.GrainType"/> spells it, made once.</summary>
    public string GrainTypeName { get; }

    public ProtocolListenerOptions Options { get; }

    /// <summary>The silo-wide services the listener's connections share.</summary>
    public GatewayServices Services { get; }

    public IGrainFactory GrainFactory => Services.GrainFactory;

    /// <summary>The silo's transport observer, where grains push what they do outside callbacks.</summary>
    public ITransportObserver Observer => Services.Observer;

    public ConnectionSiting Siting { get; }

    public GatewayMetrics Metrics => Services.Metrics;

    /// <summary>The clock of every deadline (a fake one in tests).</summary>
    public TimeProvider Time => Services.Time;

    /// <summary>The connections' logger (category <c>GatewayConnection</c>).</summary>
    public ILogger Logger => Services.ConnectionLogger;

    /// <summary>The listener's TLS certificate, loaded once, or null.</summary>
    public X509Certificate2? Certificate { get; }

    /// <summary>The refusal message's bytes (<see cref="ProtocolListenerOptions.RefusalMessage"/>), or empty.</summary>
    public byte[] RefusalMessage { get; }

    public FrameFormat Framing { get; }

    /// <summary>The most an incomplete frame may hold in the input before the gateway's backstop refuses it.</summary>
    public long MaxBufferedFrame { get; }

    public ConnectionClock.Limits ClockLimits { get; }

    /// <summary>The PROXY protocol's trusted senders and header timeout, or null when the listener takes no header.</summary>
    public (IReadOnlyList<IPNetwork> Trusted, TimeSpan Timeout)? Proxy { get; }

    /// <summary>A new decoder for one connection (decoders may hold per-connection state), or null for raw bytes.</summary>
    public IFrameDecoder? CreateDecoder() => Options.Framing.CreateDecoder(Framing);

    /// <summary>
    /// For a PROXY listener: takes a place for the client the header names, or returns why not. Set by the server.
    /// </summary>
    public Func<GatewayConnection, IPAddress, string?>? AdmitProxiedClient { get; init; }
}
