using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>
/// The library as a user meets it: the three packages from <c>dotnet pack</c> in a local folder feed, and a console
/// project outside the solution (no Directory.Build.props, no project references) that hosts its own protocol.
/// </summary>
[Trait("Category", "Packaging")]
public sealed class PackagingTests : IDisposable
{
    private static readonly string Repository = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", ".."));
    private static readonly string Configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;

    private readonly string _work = Directory.CreateTempSubdirectory("orleansprotocol-user-").FullName;

    // A version of its own, so the restore cannot take an earlier run's packages from the NuGet cache.
    private readonly string _version = $"0.1.0-test{DateTime.UtcNow:yyyyMMddHHmmssfff}";

    [Fact]
    public async Task A_console_project_referencing_the_packed_libraries_from_a_folder_feed_serves_its_own_protocol()
    {
        var feed = Directory.CreateDirectory(Path.Combine(_work, "feed")).FullName;
        foreach (var project in new[] { "Abstractions/OrleansProtocol.Abstractions", "Grains/OrleansProtocol.Grains", "Gateway.Core/OrleansProtocol.Gateway.Core" })
        {
            // Built by this test run already (dotnet test builds the solution).
            await RunAsync(Repository, "pack", Path.Combine("src", project + ".csproj"), "-c", Configuration, "--no-build", "-o", feed, $"-p:PackageVersion={_version}");
        }

        var app = Directory.CreateDirectory(Path.Combine(_work, "app")).FullName;
        await File.WriteAllTextAsync(Path.Combine(app, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="local" value="{feed}" />
              </packageSources>
            </configuration>
            """);
        await File.WriteAllTextAsync(Path.Combine(app, "UserServer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="OrleansProtocol.Gateway.Core" Version="{_version}" />
                <PackageReference Include="Microsoft.Orleans.Sdk" Version="10.4.2" />
              </ItemGroup>
            </Project>
            """);
        await File.WriteAllTextAsync(Path.Combine(app, "Program.cs"), """
            using System.Text;
            using Orleans.Configuration;
            using OrleansProtocol;
            using OrleansProtocol.Gateway;

            await ProtocolHost.RunServerAsync<UpperGrain>("127.0.0.1", 0, configureSilo: silo => silo.Configure<EndpointOptions>(o =>
            {
                o.SiloPort = int.Parse(args[0]);
                o.GatewayPort = int.Parse(args[1]);
            }));

            public sealed class UpperGrain : ProtocolGrain
            {
                protected override Task DataReceived(ReadOnlyMemory<byte> data)
                {
                    Transport.Write(Encoding.ASCII.GetBytes(Encoding.ASCII.GetString(data.Span).ToUpperInvariant()));
                    return Task.CompletedTask;
                }
            }
            """);
        await RunAsync(app, "build", "-c", "Release", "-o", Path.Combine(app, "out"));

        // Nothing of the sample host comes along: no samples, no appsettings.json to override the user's logging.
        var output = Directory.GetFiles(Path.Combine(app, "out")).Select(Path.GetFileName).ToArray();
        Assert.Contains("OrleansProtocol.Gateway.Core.dll", output);
        Assert.DoesNotContain("OrleansProtocol.Samples.dll", output);
        Assert.DoesNotContain("appsettings.json", output);
        Assert.DoesNotContain(output, f => f!.StartsWith("OpenTelemetry", StringComparison.Ordinal) || f.StartsWith("StackExchange.Redis", StringComparison.Ordinal));

        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(app, "out", "UserServer.dll"));
        start.ArgumentList.Add(TestPorts.Free().ToString());
        start.ArgumentList.Add(TestPorts.Free().ToString());
        using var server = Process.Start(start)!;
        try
        {
            var endpoint = await ListeningEndPointAsync(server);
            await using var client = await TestClient.ConnectAsync(endpoint);
            await client.SendAsync("hello from a user project\n");
            Assert.Equal("HELLO FROM A USER PROJECT", await client.ReadLineAsync());
        }
        finally
        {
            server.Kill(entireProcessTree: true);
            await server.WaitForExitAsync();
        }
    }

    private static async Task<IPEndPoint> ListeningEndPointAsync(Process server)
    {
        var listening = new Regex(@"serving \S+ on (?<endpoint>[\d.]+:\d+)");
        var seen = new StringBuilder();
        while (await server.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromMinutes(1)) is { } line)
        {
            seen.AppendLine(line);
            if (listening.Match(line) is { Success: true } match)
            {
                return IPEndPoint.Parse(match.Groups["endpoint"].Value);
            }
        }

        throw new InvalidOperationException($"The user's server exited without listening ({server.StandardError.ReadToEnd()}):\n{seen}");
    }

    private static async Task RunAsync(string directory, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(5));
        Assert.True(process.ExitCode == 0, $"dotnet {string.Join(' ', arguments)} failed ({process.ExitCode}):\n{await stdout}\n{await stderr}");
    }

    public void Dispose()
    {
        Directory.Delete(_work, recursive: true);

        // The test's packages leave the NuGet cache with it.
        var cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        foreach (var id in new[] { "orleansprotocol.abstractions", "orleansprotocol.grains", "orleansprotocol.gateway.core" })
        {
            var cached = Path.Combine(cache, id, _version);
            if (Directory.Exists(cached))
            {
                Directory.Delete(cached, recursive: true);
            }
        }
    }
}
