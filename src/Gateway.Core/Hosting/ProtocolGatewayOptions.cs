namespace OrleansProtocol.Gateway;

/// <summary>Settings shared by every listener of a silo's protocol gateway.</summary>
public sealed class ProtocolGatewayOptions
{
    /// <summary>
    /// The service key of the <see cref="TimeProvider"/> the gateway's clocks read (idle, first data, data rates,
    /// handshake and PROXY deadlines, drain). Register a keyed <c>FakeTimeProvider</c> under it to drive them in a
    /// test without moving Orleans' own clocks; without one the gateway uses the silo's <see cref="TimeProvider"/>.
    /// </summary>
    public const string TimeProviderKey = "OrleansProtocol.Gateway";

    /// <summary>
    /// How long a stopping silo waits for its connections to close gracefully (each is asked to flush and close)
    /// before it aborts the rest. Defaults to 20 seconds, below the host's 30-second shutdown timeout, as Kestrel
    /// drains within <c>HostOptions.ShutdownTimeout</c>.
    /// </summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Most connections open at once in this silo, across every listener and outbound connection; connections beyond
    /// it are refused at accept and counted. Defaults to 20,000 (the Kestrel limit the reference configuration uses).
    /// Null turns it off: a risk under a connection flood.
    /// </summary>
    public int? MaxConnections { get; set; } = 20_000;
}
