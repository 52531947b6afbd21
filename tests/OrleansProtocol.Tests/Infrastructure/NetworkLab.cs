using System.Diagnostics;
using System.Net;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>
/// Silos that can be cut from each other while their clients still reach them: each silo runs in its own network
/// namespace, joined to this one by a veth pair (10.X.i.2 inside, 10.X.i.1 here) and routed through here. Silo-to-silo
/// traffic is forwarded, so it crosses this namespace's FORWARD chain, where the lab's own chain drops what a fault
/// says (a partition, a one-way cut, random loss by iptables' statistic match); clients (this process) and Redis
/// (listening here) talk to a silo directly, never forwarded, so no fault touches them. Everything the lab adds (the
/// namespaces and their links, its chain and the jump to it, ip_forward) is removed or restored on dispose.
/// </summary>
public sealed class NetworkLab : IAsyncDisposable
{
    private readonly string _chain;
    private readonly string _inputChain;
    private readonly string _previousForwarding;
    private readonly List<string> _namespaces = [];
    private readonly int _octet;

    private NetworkLab(string id, int octet, string previousForwarding)
    {
        _chain = $"OPLAB-{id}";
        _inputChain = $"OPLAB-{id}-IN";
        _octet = octet;
        _previousForwarding = previousForwarding;
        Id = id;
    }

    public string Id { get; }

    /// <summary>Why the lab cannot run here (not root, no <c>ip</c> or <c>iptables</c>, no namespaces), or null.</summary>
    public static string? Unavailable { get; } = Probe();

    /// <summary>The silo's address inside its namespace: what it advertises and what clients connect to.</summary>
    public IPAddress SiloAddress(int silo) => IPAddress.Parse($"10.{_octet}.{silo + 1}.2");

    /// <summary>This namespace's end of the silo's link: where the silo reaches Redis.</summary>
    public IPAddress HostAddress(int silo) => IPAddress.Parse($"10.{_octet}.{silo + 1}.1");

    /// <summary>The command that runs a program inside the silo's namespace (<c>ip netns exec NAME</c>).</summary>
    public string[] Exec(int silo) => ["ip", "netns", "exec", _namespaces[silo]];

    public static async Task<NetworkLab> CreateAsync(int silos)
    {
        if (Unavailable is { } reason)
        {
            throw new InvalidOperationException(reason);
        }

        var id = Guid.NewGuid().ToString("N")[..6];

        // 10.200–10.249: one /16 per lab, the third octet per silo; the machine's own networks are not in 10/8 here,
        // and a clash is reported by `ip addr add` rather than routed wrongly.
        var octet = 200 + Random.Shared.Next(50);
        var lab = new NetworkLab(id, octet, (await File.ReadAllTextAsync("/proc/sys/net/ipv4/ip_forward")).Trim());
        try
        {
            await File.WriteAllTextAsync("/proc/sys/net/ipv4/ip_forward", "1");
            await RunAsync("iptables", "-N", lab._chain);
            await RunAsync("iptables", "-A", lab._chain, "-s", $"10.{octet}.0.0/16", "-d", $"10.{octet}.0.0/16", "-j", "ACCEPT");
            await RunAsync("iptables", "-I", "FORWARD", "1", "-j", lab._chain);
            await RunAsync("iptables", "-N", lab._inputChain);
            await RunAsync("iptables", "-I", "INPUT", "1", "-s", $"10.{octet}.0.0/16", "-j", lab._inputChain);
            for (var i = 0; i < silos; i++)
            {
                var ns = $"op{id}-{i}";
                var outside = $"opv{id}{i}";
                await RunAsync("ip", "netns", "add", ns);
                lab._namespaces.Add(ns);
                await RunAsync("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns);
                await RunAsync("ip", "addr", "add", $"{lab.HostAddress(i)}/24", "dev", outside);
                await RunAsync("ip", "link", "set", outside, "up");
                await RunAsync("ip", "-n", ns, "link", "set", "lo", "up");
                await RunAsync("ip", "-n", ns, "addr", "add", $"{lab.SiloAddress(i)}/24", "dev", "eth0");
                await RunAsync("ip", "-n", ns, "link", "set", "eth0", "up");
                await RunAsync("ip", "-n", ns, "route", "add", "default", "via", lab.HostAddress(i).ToString());
            }
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }

        return lab;
    }

    /// <summary>Cuts <paramref name="silo"/> from each of <paramref name="others"/>, both ways.</summary>
    public async Task PartitionAsync(int silo, params int[] others)
    {
        foreach (var other in others)
        {
            await DropAsync(silo, other);
            await DropAsync(other, silo);
        }
    }

    /// <summary>Drops what <paramref name="from"/> sends to <paramref name="to"/> (one way), every packet or at random with the given probability.</summary>
    public Task DropAsync(int from, int to, double probability = 1.0)
    {
        string[] match = ["iptables", "-I", _chain, "1", "-s", $"10.{_octet}.{from + 1}.0/24", "-d", $"10.{_octet}.{to + 1}.0/24"];
        return probability >= 1.0
            ? RunAsync([.. match, "-j", "DROP"])
            : RunAsync([.. match, "-m", "statistic", "--mode", "random", "--probability", probability.ToString("0.####", System.Globalization.CultureInfo.InvariantCulture), "-j", "DROP"]);
    }

    /// <summary>Makes this namespace's TCP <paramref name="port"/> (Redis, say) unreachable from every silo: their packets to it are dropped.</summary>
    public Task BlockHostPortAsync(int port) =>
        RunAsync("iptables", "-A", _inputChain, "-p", "tcp", "--dport", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-j", "DROP");

    /// <summary>Removes every fault: silo-to-silo traffic and the silos' traffic to this namespace flow again.</summary>
    public async Task HealAsync()
    {
        await RunAsync("iptables", "-F", _inputChain);
        await RunAsync("iptables", "-F", _chain);
        await RunAsync("iptables", "-A", _chain, "-s", $"10.{_octet}.0.0/16", "-d", $"10.{_octet}.0.0/16", "-j", "ACCEPT");
    }

    public async ValueTask DisposeAsync()
    {
        // Best effort, each step on its own: a failed test must not leave a namespace, a chain or forwarding behind.
        foreach (var ns in _namespaces)
        {
            await TryRunAsync("ip", "netns", "del", ns);
        }

        await TryRunAsync("iptables", "-D", "FORWARD", "-j", _chain);
        await TryRunAsync("iptables", "-F", _chain);
        await TryRunAsync("iptables", "-X", _chain);
        await TryRunAsync("iptables", "-D", "INPUT", "-s", $"10.{_octet}.0.0/16", "-j", _inputChain);
        await TryRunAsync("iptables", "-F", _inputChain);
        await TryRunAsync("iptables", "-X", _inputChain);
        try
        {
            await File.WriteAllTextAsync("/proc/sys/net/ipv4/ip_forward", _previousForwarding);
        }
        catch (IOException)
        {
        }
    }

    private static string? Probe()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "network namespaces need Linux";
        }

        if (Environment.UserName != "root")
        {
            return $"the network lab needs root (network namespaces, iptables); running as {Environment.UserName}";
        }

        foreach (var tool in new[] { "ip", "iptables" })
        {
            if (!new[] { "/usr/sbin", "/sbin", "/usr/bin", "/bin" }.Any(d => File.Exists(Path.Combine(d, tool))))
            {
                return $"`{tool}` is not installed ({(tool == "ip" ? "iproute2" : "iptables")}; .ci/run installs it)";
            }
        }

        // Privilege can be missing even as root (a container without CAP_NET_ADMIN): try the two things the lab does.
        var probe = $"opprobe{Environment.ProcessId}";
        try
        {
            RunAsync("ip", "netns", "add", probe).GetAwaiter().GetResult();
            RunAsync("ip", "netns", "del", probe).GetAwaiter().GetResult();
            RunAsync("iptables", "-L", "FORWARD", "-n").GetAwaiter().GetResult();
            return null;
        }
        catch (InvalidOperationException e)
        {
            return $"no privilege for network namespaces or iptables here: {e.Message}";
        }
    }

    private static async Task TryRunAsync(params string[] command)
    {
        try
        {
            await RunAsync(command);
        }
        catch (InvalidOperationException)
        {
        }
    }

    private static async Task RunAsync(params string[] command)
    {
        var start = new ProcessStartInfo(command[0]) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var argument in command.Skip(1))
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        _ = process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"`{string.Join(' ', command)}` failed ({process.ExitCode}): {(await error).Trim()}");
        }
    }
}
