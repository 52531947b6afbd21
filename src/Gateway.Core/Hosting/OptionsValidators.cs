using Microsoft.Extensions.Options;
using OrleansProtocol.Framing;

namespace OrleansProtocol.Gateway;

/// <summary>Checks every listener setting at startup and reports all problems at once, each with its fix.</summary>
internal sealed class ProtocolListenerOptionsValidator : IValidateOptions<ProtocolListenerOptions>
{
    public ValidateOptionsResult Validate(string? name, ProtocolListenerOptions options)
    {
        var failures = new List<string>();
        var prefix = $"Listener '{name}':";
        var hosts = ProtocolListenerOptions.SplitList(options.Host);
        if (hosts.Length == 0)
        {
            failures.Add($"{prefix} Host is empty. Use e.g. 127.0.0.1, 0.0.0.0, or several separated by commas.");
        }

        foreach (var host in hosts)
        {
            SettingChecks.Host(failures, prefix, host);
        }

        SettingChecks.Port(failures, prefix, options.Port);
        if (options.Backlog < 1)
        {
            failures.Add($"{prefix} Backlog {options.Backlog} must be at least 1 (default 512).");
        }

        if (options.MaxDataReceivedSize < 1)
        {
            failures.Add($"{prefix} MaxDataReceivedSize {options.MaxDataReceivedSize} must be at least 1 (default 65536).");
        }

        if (options.MaxReadBufferSize < options.MaxDataReceivedSize)
        {
            failures.Add($"{prefix} MaxReadBufferSize {options.MaxReadBufferSize} must be at least MaxDataReceivedSize ({options.MaxDataReceivedSize}).");
        }

        if (options.MaxGroupBacklog < 1)
        {
            failures.Add($"{prefix} MaxGroupBacklog {options.MaxGroupBacklog} must be positive (default 8388608, 8 MiB).");
        }

        if (options.MaxWriteBufferSize is < 1)
        {
            failures.Add($"{prefix} MaxWriteBufferSize {options.MaxWriteBufferSize} must be positive (default 67108864, 64 MiB), or null for no cap.");
        }

        if (options.MaxConnections is < 1)
        {
            failures.Add($"{prefix} MaxConnections {options.MaxConnections} must be positive (default 10000), or null for no limit.");
        }

        if (options.MaxConnectionsPerAddress is < 1)
        {
            failures.Add($"{prefix} MaxConnectionsPerAddress {options.MaxConnectionsPerAddress} must be positive, or null for no limit (the default).");
        }

        SettingChecks.Timeout(failures, prefix, nameof(options.IdleTimeout), options.IdleTimeout, "off");
        SettingChecks.Timeout(failures, prefix, nameof(options.FirstDataTimeout), options.FirstDataTimeout, "off");
        SettingChecks.Timeout(failures, prefix, nameof(options.ProxyHeaderTimeout), options.ProxyHeaderTimeout, "00:00:10");
        Rate(nameof(options.MinReceiveDataRate), options.MinReceiveDataRate, options.MinReceiveDataRateGracePeriod);
        Rate(nameof(options.MinSendDataRate), options.MinSendDataRate, options.MinSendDataRateGracePeriod);

        foreach (var problem in FrameCodec.Problems(options.Framing.ToFormat()))
        {
            failures.Add($"{prefix} Framing: {problem}");
        }

        if (options.UnixSocketPath is { } unixPath && System.Text.Encoding.UTF8.GetByteCount(unixPath) > 107)
        {
            failures.Add($"{prefix} UnixSocketPath is {System.Text.Encoding.UTF8.GetByteCount(unixPath)} bytes long; a Unix socket path holds at most 107 (use a shorter directory, e.g. /run/app/x.sock).");
        }

        if (options.Framing.Kind == FramingKind.Custom && options.Framing.Decoder is null)
        {
            failures.Add($"{prefix} Framing: Custom framing needs a Decoder, set in code (Framing.Decoder = format => new MyDecoder(format)).");
        }

        if (options.ProxyProtocol)
        {
            var networks = ProtocolListenerOptions.SplitList(options.ProxyTrustedNetworks);
            if (networks.Length == 0)
            {
                failures.Add($"{prefix} ProxyProtocol is on but ProxyTrustedNetworks is empty. List the load balancers' networks, e.g. 10.0.0.0/8.");
            }

            foreach (var network in networks.Where(n => !System.Net.IPNetwork.TryParse(n, out _)))
            {
                failures.Add($"{prefix} ProxyTrustedNetworks entry '{network}' is not a CIDR block such as 10.0.0.0/8.");
            }
        }

        if (options.Tls.StartTls && !options.Tls.Enabled)
        {
            failures.Add($"{prefix} Tls.StartTls needs the certificate to upgrade with: set Tls.CertificatePath.");
        }

        // With STARTTLS the connection starts in plaintext, so a refusal can still be said.
        if (options.Tls.Enabled && !options.Tls.StartTls && options.RefusalMessage is { Length: > 0 })
        {
            failures.Add($"{prefix} RefusalMessage cannot be used with Tls: a refused connection is closed before its handshake. Remove one of them.");
        }

        if (options.Tls.Enabled)
        {
            if (!File.Exists(options.Tls.CertificatePath))
            {
                failures.Add($"{prefix} Tls.CertificatePath '{options.Tls.CertificatePath}' does not exist. Point it at a .pfx or PEM certificate.");
            }

            if (options.Tls.KeyPath is { Length: > 0 } key && !File.Exists(key))
            {
                failures.Add($"{prefix} Tls.KeyPath '{key}' does not exist.");
            }

            SettingChecks.Timeout(failures, prefix, "Tls.HandshakeTimeout", options.Tls.HandshakeTimeout, "00:00:10");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);

        void Rate(string setting, double? bytesPerSecond, TimeSpan gracePeriod)
        {
            if (bytesPerSecond is { } rate && !(rate > 0 && double.IsFinite(rate)))
            {
                failures.Add($"{prefix} {setting} {rate} must be a positive number of bytes per second (default 240), or null for none.");
            }

            if (gracePeriod < TimeSpan.Zero)
            {
                failures.Add($"{prefix} {setting}GracePeriod {gracePeriod} must not be negative (default 00:00:05).");
            }
        }
    }
}

/// <summary>Checks the gateway-wide settings at startup.</summary>
internal sealed class ProtocolGatewayOptionsValidator : IValidateOptions<ProtocolGatewayOptions>
{
    public ValidateOptionsResult Validate(string? name, ProtocolGatewayOptions options)
    {
        var failures = new List<string>();
        if (options.DrainTimeout < TimeSpan.Zero)
        {
            failures.Add($"ProtocolGateway: DrainTimeout {options.DrainTimeout} must not be negative (default 00:00:20; 0 aborts at once).");
        }

        if (options.MaxConnections is < 1)
        {
            failures.Add($"ProtocolGateway: MaxConnections {options.MaxConnections} must be positive (default 20000), or null for no limit.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

/// <summary>Checks a datagram endpoint's settings at startup, every problem at once.</summary>
internal sealed class DatagramEndpointOptionsValidator : IValidateOptions<DatagramEndpointOptions>
{
    public ValidateOptionsResult Validate(string? name, DatagramEndpointOptions options)
    {
        var failures = new List<string>();
        var prefix = $"Datagram endpoint '{name}':";
        SettingChecks.Host(failures, prefix, options.Host);
        SettingChecks.Port(failures, prefix, options.Port);

        if (options.MaxQueuedDatagrams < 1)
        {
            failures.Add($"{prefix} MaxQueuedDatagrams {options.MaxQueuedDatagrams} must be at least 1 (default 1024).");
        }

        if (options.MaxDatagramsPerCall < 1)
        {
            failures.Add($"{prefix} MaxDatagramsPerCall {options.MaxDatagramsPerCall} must be at least 1 (default 64).");
        }

        if (options.MaxPeers < 1)
        {
            failures.Add($"{prefix} MaxPeers {options.MaxPeers} must be at least 1 (default 10000).");
        }

        SettingChecks.Timeout(failures, prefix, nameof(options.PeerIdleTimeout), options.PeerIdleTimeout, "00:02:00");

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

/// <summary>Checks the validators share, each adding a sentence with the fix.</summary>
internal static class SettingChecks
{
    public static void Host(List<string> failures, string prefix, string host)
    {
        if (ProtocolListenerOptions.ParseHost(host) is null)
        {
            failures.Add($"{prefix} Host '{host}' is not an IP address, 'localhost' or '*'. Use e.g. 127.0.0.1 or 0.0.0.0.");
        }
    }

    public static void Port(List<string> failures, string prefix, int port)
    {
        if (port is < 0 or > 65535)
        {
            failures.Add($"{prefix} Port {port} is outside 0-65535. Use 0 for a free port.");
        }
    }

    public static void Timeout(List<string> failures, string prefix, string setting, TimeSpan value, string defaultValue)
    {
        if (value <= TimeSpan.Zero && value != System.Threading.Timeout.InfiniteTimeSpan)
        {
            failures.Add($"{prefix} {setting} {value} must be positive (default {defaultValue}), or infinite (-00:00:00.001) for none.");
        }
    }
}
