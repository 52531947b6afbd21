using System.Globalization;
using System.Reflection;
using Microsoft.Extensions.Configuration;
using OrleansProtocol.Gateway;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>
/// Every gateway, listener and datagram setting can come from configuration (appsettings.json, environment, command
/// line all reach the same binder), and bad settings stop the host with every problem named in one error.
/// </summary>
[Trait("Category", "Fast")]
public sealed class OptionsBindingTests
{
    [Theory]
    [InlineData(typeof(ProtocolGatewayOptions))]
    [InlineData(typeof(ProtocolListenerOptions))]
    [InlineData(typeof(DatagramEndpointOptions))]
    public void Every_public_setting_binds_from_configuration(Type optionsType)
    {
        // A value unlike the default for every settable property, nested ones (Tls:, Framing:) included.
        var values = new Dictionary<string, string?>();
        var expected = new List<(string Key, Func<object, object?> Read, object? Default)>();
        Collect(optionsType, Activator.CreateInstance(optionsType)!, "", o => o, values, expected);

        var bound = Activator.CreateInstance(optionsType)!;
        new ConfigurationBuilder().AddInMemoryCollection(values).Build().Bind(bound);

        Assert.NotEmpty(expected);
        Assert.All(expected, e => Assert.True(!Equals(e.Read(bound), e.Default), $"{optionsType.Name}:{e.Key} did not bind from '{values[e.Key]}'"));
    }

    private static void Collect(
        Type type, object defaults, string prefix, Func<object, object?> path,
        Dictionary<string, string?> values, List<(string, Func<object, object?>, object?)> expected)
    {
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.GetSetMethod() is not null))
        {
            var key = prefix + property.Name;
            var current = property.GetValue(defaults);
            Func<object, object?> read = o => path(o) is { } owner ? property.GetValue(owner) : null;
            var propertyType = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            if (propertyType.IsClass && propertyType != typeof(string))
            {
                Collect(propertyType, current!, key + ":", read, values, expected);
                continue;
            }

            values[key] = OtherThan(propertyType, current);
            expected.Add((key, read, current));
        }
    }

    private static string OtherThan(Type type, object? current) => type switch
    {
        _ when type == typeof(string) => "127.0.0.2",
        _ when type == typeof(bool) => (!(bool)(current ?? false)).ToString(),
        _ when type == typeof(int) => Convert.ToString(Convert.ToInt32(current ?? 0) + 7, CultureInfo.InvariantCulture)!,
        _ when type == typeof(long) => Convert.ToString(Convert.ToInt64(current ?? 0L) + 7, CultureInfo.InvariantCulture)!,
        _ when type == typeof(double) => Convert.ToString(Convert.ToDouble(current ?? 0.0) + 7.5, CultureInfo.InvariantCulture)!,
        _ when type == typeof(TimeSpan) => "00:00:42.5",
        _ when type.IsEnum => Enum.GetValues(type).Cast<object>().First(v => !v.Equals(current)).ToString()!,
        _ => throw new Xunit.Sdk.XunitException($"No sample value for settings of type {type}."),
    };

    [Fact]
    public async Task The_host_refuses_to_start_on_bad_settings_and_names_every_one_with_its_fix()
    {
        using var host = GatewayHostProcess.Start(
            $"--Silo:SiloPort={TestPorts.Free()}",
            $"--Silo:GatewayPort={TestPorts.Free()}",
            $"--Health:Urls=http://127.0.0.1:{TestPorts.Free()}",
            "--OrleansProtocol:PortOffset=20500",
            "--OrleansProtocol:Listeners:echo:Port=70000",
            "--OrleansProtocol:Listeners:chat:MinReceiveDataRate=-1",
            "--OrleansProtocol:Listeners:chat:FirstDataTimeout=00:00:00",
            "--OrleansProtocol:Gateway:DrainTimeout=-00:00:01");
        Assert.Equal(2, await host.WaitForExitAsync());
        Assert.Contains("The gateway did not start: 4 invalid setting(s).", host.Output);
        Assert.Contains("Listener 'echo': Port 70000 is outside 0-65535", host.Output);
        Assert.Contains("Listener 'chat': MinReceiveDataRate -1 must be a positive number", host.Output);
        Assert.Contains("Listener 'chat': FirstDataTimeout 00:00:00 must be positive", host.Output);
        Assert.Contains("ProtocolGateway: DrainTimeout -00:00:01 must not be negative", host.Output);
    }

    [Fact]
    public async Task Kubernetes_hosting_is_opt_in_and_outside_a_pod_the_host_says_which_variable_is_missing()
    {
        // The same host with Kubernetes:Enabled, but without the pod's downward-API variables: refused, with the fix.
        using var host = GatewayHostProcess.Start(
            $"--Silo:SiloPort={TestPorts.Free()}",
            $"--Silo:GatewayPort={TestPorts.Free()}",
            $"--Health:Urls=http://127.0.0.1:{TestPorts.Free()}",
            "--OrleansProtocol:PortOffset=20600",
            "--Kubernetes:Enabled=true");
        Assert.Equal(2, await host.WaitForExitAsync());
        Assert.Contains("The gateway did not start: 1 invalid setting(s).", host.Output);
        Assert.Contains("Set it via the POD_NAMESPACE environment variable", host.Output);
    }
}
