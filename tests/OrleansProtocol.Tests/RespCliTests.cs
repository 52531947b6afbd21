using System.Globalization;
using System.Text;
using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests;

/// <summary>
/// The RESP sample checked by Redis' own clients, not ours: <c>redis-cli</c> for each command and its error text,
/// <c>redis-cli --pipe</c>, SUBSCRIBE and PUBLISH in two processes on different silos, and <c>redis-benchmark</c>.
/// </summary>
[Collection(ThreeSiloCollection.Name)]
public sealed class RespCliTests(ThreeSiloFixture fixture)
{
    private const string NotInstalled = "redis-cli / redis-benchmark are not installed on this machine (.ci/run installs redis-tools)";

    [SkippableFact]
    public async Task Redis_cli_runs_each_command_and_gets_Redis_replies_and_error_texts()
    {
        Skip.IfNot(RedisCli.Installed, NotInstalled);
        var server = fixture.EndPoint(0, "resp");
        var key = $"cli-{Guid.NewGuid():N}";
        (string[] Command, string Reply)[] script =
        [
            (["ping"], "PONG"),
            (["ping", "hi there"], "\"hi there\""),
            (["echo", "hello"], "\"hello\""),
            (["select", "0"], "OK"),
            (["select", "3"], "(error) ERR DB index is out of range"),
            (["set", key, "v"], "OK"),
            (["get", key], "\"v\""),
            (["set", key, "w", "nx"], "(nil)"),
            (["set", key, "w", "xx", "ex", "100"], "OK"),
            (["ttl", key], "(integer) 100"),
            (["set", key, "x", "px", "0"], "(error) ERR invalid expire time in 'set' command"),
            (["set", key, "x", "bogus"], "(error) ERR syntax error"),
            (["expire", key, "50"], "(integer) 1"),
            (["ttl", key], "(integer) 50"),
            (["ttl", key + "-none"], "(integer) -2"),
            (["expire", key + "-none", "5"], "(integer) 0"),
            (["incr", key + "n"], "(integer) 1"),
            (["incrby", key + "n", "9"], "(integer) 10"),
            (["decr", key + "n"], "(integer) 9"),
            (["incr", key], "(error) ERR value is not an integer or out of range"),
            (["incrby", key + "n", "x"], "(error) ERR value is not an integer or out of range"),
            (["mset", key + "a", "1", key + "b", "2"], "OK"),
            (["mget", key + "a", key + "-none", key + "b"], "1) \"1\"\n2) (nil)\n3) \"2\""),
            (["exists", key, key + "a", key + "-none"], "(integer) 2"),
            (["del", key, key + "a", key + "-none"], "(integer) 2"),
            (["get", key], "(nil)"),
            (["get"], "(error) ERR wrong number of arguments for 'get' command"),
            (["mset", "a"], "(error) ERR wrong number of arguments for 'mset' command"),
            (["nosuch", "x"], "(error) ERR unknown command 'nosuch', with args beginning with: 'x' "),
            (["client", "setname", "tester"], "OK"),
            (["client", "getname"], "(nil)"),
            (["client", "setname", "two words"], "(error) ERR Client names cannot contain spaces, newlines or special characters."),
            (["publish", $"{key}-ch", "nobody"], "(integer) 0"),
            (["quit"], "OK"),
        ];
        foreach (var (command, reply) in script)
        {
            Assert.Equal(reply, await RedisCli.RunAsync(server, command));
        }

        // One connection: CLIENT SETNAME shows in GETNAME and in CLIENT LIST; CLIENT ID is in the list too.
        var session = await RedisCli.RunToolAsync(RedisCli.Path, "CLIENT SETNAME probe\nCLIENT GETNAME\nCLIENT ID\nCLIENT LIST\n", ["-p", $"{RedisCli.PortOf(server)}"]);
        var lines = session.Split('\n');
        Assert.Equal(["OK", "probe"], lines[..2]);
        Assert.Contains(lines, l => l.StartsWith($"id={lines[2]} ", StringComparison.Ordinal) && l.Contains(" name=probe ", StringComparison.Ordinal));

        // COMMAND, as clients ask it at start.
        Assert.Contains("\"get\"", await RedisCli.RunAsync(server, "command"));
        Assert.Equal("(integer) 23", await RedisCli.RunAsync(server, "command", "count"));
    }

    [SkippableFact]
    public async Task Inline_commands_with_Redis_quoting_get_the_same_bytes_back_as_from_a_real_redis_server()
    {
        Skip.IfNot(RedisServer.Installed, RedisServer.NotInstalled);

        // What a user types into nc or telnet: quoted arguments, escapes, then unbalanced quotes (an error, then the
        // server closes; the PING after it is never answered).
        var key = $"inline-{Guid.NewGuid():N}";
        var script = string.Concat(
            $"SET \"{key} a\" \"x\\x41\\n\\\"y\"\r\n",
            $"GET \"{key} a\"\r\n",
            $"MSET {key}1 'it\\'s' {key}2 \"tab\\there\" {key}3 ab\"c d\" {key}4 '' {key}5 \"\\q\\x4\"\r\n",
            $"MGET {key}1 {key}2 {key}3 {key}4 {key}5\r\n",
            "  PING   \"two words\"\t\r\n",
            $"DEL \"{key} a\" {key}1 {key}2 {key}3 {key}4 {key}5\r\n",
            "ECHO \"a\"b\r\n",
            "PING\r\n");

        async Task<string> RunAsync(System.Net.EndPoint server)
        {
            await using var client = await TestClient.ConnectAsync(server);
            await client.SendAsync(script);
            return Encoding.Latin1.GetString(await client.ReadToEndAsync());
        }

        var (redis, port) = await RedisServer.StartAsync();
        try
        {
            var expected = await RunAsync(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, port));
            Assert.EndsWith("-ERR Protocol error: unbalanced quotes in request\r\n", expected);
            Assert.Equal(expected, await RunAsync(fixture.EndPoint(0, "resp")));
        }
        finally
        {
            redis.Kill();
        }
    }

    [SkippableFact]
    public async Task Redis_cli_pipes_100000_SETs_through_one_gateway_and_every_silo_reads_them()
    {
        Skip.IfNot(RedisCli.Installed, NotInstalled);
        var prefix = $"pipe-{Guid.NewGuid():N}";
        var commands = new StringBuilder();
        for (var i = 0; i < 100_000; i++)
        {
            commands.Append(CultureInfo.InvariantCulture, $"SET {prefix}:{i} value-{i}\r\n");
        }

        var report = await RedisCli.RunToolAsync(RedisCli.Path, commands.ToString(), ["-p", $"{RedisCli.PortOf(fixture.EndPoint(0, "resp"))}", "--pipe"]);
        Assert.Contains("errors: 0, replies: 100000", report);
        for (var silo = 0; silo < 3; silo++)
        {
            Assert.Equal("\"value-99999\"", await RedisCli.RunAsync(fixture.EndPoint(silo, "resp"), "get", $"{prefix}:99999"));
            Assert.Equal("\"value-0\"", await RedisCli.RunAsync(fixture.EndPoint(silo, "resp"), "get", $"{prefix}:0"));
        }
    }

    [SkippableFact]
    public async Task Redis_cli_SUBSCRIBE_on_one_silo_receives_PUBLISH_from_processes_on_the_other_two_in_publish_order()
    {
        Skip.IfNot(RedisCli.Installed, NotInstalled);
        var channel = $"news-{Guid.NewGuid():N}";
        using var subscriber = new RedisCli.Session(fixture.EndPoint(0, "resp"), "subscribe", channel);
        Assert.Equal(["subscribe", channel, "1"], [await subscriber.ReadLineAsync(), await subscriber.ReadLineAsync(), await subscriber.ReadLineAsync()]);

        // Each publisher is its own redis-cli process on another silo's gateway, pipelining 200 PUBLISHes.
        var publishers = new[] { 1, 2 }.Select(silo => RedisCli.RunToolAsync(
            RedisCli.Path,
            string.Concat(Enumerable.Range(0, 200).Select(i => $"PUBLISH {channel} s{silo}-{i}\n")),
            ["-p", $"{RedisCli.PortOf(fixture.EndPoint(silo, "resp"))}"]));
        var replies = await Task.WhenAll(publishers);
        // Each reply counts the receivers on the publisher's silo, as PUBLISH in a Redis Cluster: none there.
        Assert.All(replies, r => Assert.Equal(Enumerable.Repeat("0", 200), r.Split('\n')));

        var received = new List<string>();
        for (var i = 0; i < 400; i++)
        {
            Assert.Equal("message", await subscriber.ReadLineAsync());
            Assert.Equal(channel, await subscriber.ReadLineAsync());
            received.Add(await subscriber.ReadLineAsync());
        }

        foreach (var silo in new[] { 1, 2 })
        {
            Assert.Equal(Enumerable.Range(0, 200).Select(i => $"s{silo}-{i}"), received.Where(m => m.StartsWith($"s{silo}-", StringComparison.Ordinal)));
        }
    }

    [SkippableFact]
    public async Task Redis_benchmark_runs_ping_set_get_and_incr_with_and_without_pipelining()
    {
        Skip.IfNot(RedisCli.Installed, NotInstalled);
        foreach (var pipeline in new[] { "1", "16" })
        {
            var report = await RedisCli.RunToolAsync(RedisCli.BenchmarkPath, null,
                ["-p", $"{RedisCli.PortOf(fixture.EndPoint(1, "resp"))}", "-q", "-n", "5000", "-c", "10", "-P", pipeline, "-t", "ping,set,get,incr"]);
            foreach (var test in new[] { "PING_INLINE", "PING_MBULK", "SET", "GET", "INCR" })
            {
                Assert.Matches($"{test}: [0-9.]+ requests per second", report);
            }
        }
    }
}
