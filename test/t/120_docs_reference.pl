
# The SQL reference and the catalog agree.  Every public function of schema
# orchestrator (EXECUTE granted to orchestrator_user, orchestrator_admin,
# orchestrator_http or PUBLIC; the "_" internals are not public) has a
# heading in docs/sql-reference.md of the form
#
#   ### `name(arg type [DEFAULT x], ...) returns type`
#
# and every such heading names a function that exists with exactly those
# argument names, modes, types, defaults and result type.  Types are compared
# as PostgreSQL spells them (timestamptz = timestamp with time zone), defaults
# without a cast to the argument's own type ('{}' = '{}'::jsonb).  A failure
# names the function or the heading and prints the heading the catalog
# expects, ready to paste.
#
# The table "Roles and grants" of the reference names every function in the
# row of each role it is granted to, and every orchestrator.* setting has a
# row in the reference's and the README's tables.  Also: the docs stand alone; no file of
# README.md or docs/ mentions ../shared, API.md or DESIGN.md, and their links
# to each other resolve.

use strict;
use warnings;

use File::Find;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = $ENV{TESTDIR} // '.';
my $reference = "$root/docs/sql-reference.md";

# --- the docs stand alone ------------------------------------------------
my @doc_files = ("$root/README.md");
find(sub { push @doc_files, $File::Find::name if -f $_ }, "$root/docs");
my @mentions;
for my $file (sort @doc_files)
{
	open my $fh, '<', $file or die "$file: $!";
	while (my $line = <$fh>)
	{
		push @mentions, "$file:$.: $1"
		  if $line =~ m{(\.\./shared|\bAPI\.md\b|\bDESIGN\.md\b)}i;
	}
	close $fh;
}
is(join("\n", @mentions), '',
	'README.md and docs/ never mention ../shared, API.md or DESIGN.md');

# --- links between the documents resolve ---------------------------------
# Relative links of README.md and docs/*.md name files that exist and, for a
# document, an anchor one of its headings makes (GitHub's rule: lower case,
# punctuation dropped, spaces to hyphens).
sub slug
{
	my ($h) = @_;
	$h = lc $h;
	$h =~ s/^\s+|\s+$//g;
	$h =~ s/[^\w\- ]//g;
	$h =~ s/ /-/g;
	return $h;
}
my (%anchors, %texts, @broken);
for my $file (grep { /\.md$/ } @doc_files)
{
	open my $fh, '<', $file or die "$file: $!";
	local $/;
	my $text = <$fh>;
	close $fh;
	$text =~ s/^```.*?^```//gms;
	$texts{$file} = $text;
	$anchors{$file} = { map { slug($_) => 1 } ($text =~ /^#+\s+(.*)$/mg) };
}
for my $file (sort keys %texts)
{
	(my $dir = $file) =~ s{/[^/]*$}{};
	while ($texts{$file} =~ /\]\(([^)#\s]*)(?:#([^)\s]*))?\)/g)
	{
		my ($target, $anchor) = ($1, $2);
		next if $target =~ /^[a-z]+:/;
		my $path = $target eq '' ? $file : "$dir/$target";
		1 while $path =~ s{/[^/]+/\.\./}{/};
		if (!-e $path) { push @broken, "$file: link to missing $target"; next; }
		push @broken, "$file: link to $target#$anchor: no such heading"
		  if defined $anchor && $path =~ /\.md$/ && $anchors{$path} && !$anchors{$path}{$anchor};
	}
}
is(join("\n", @broken), '', 'links between README.md and docs/ resolve');

# --- the headings of the reference ---------------------------------------
my $reference_text = do { local (@ARGV, $/) = ($reference); <> };
open my $fh, '<', $reference or die "$reference: $!";
my @headings;	# [line, text, name, args, result]
while (my $line = <$fh>)
{
	next unless $line =~ /^###\s+`([a-z_][a-z0-9_]*)\((.*)\)\s+returns\s+(.+)`\s*$/i;
	push @headings, [ $., "$1($2) returns $3", $1, $2, $3 ];
}
close $fh;
cmp_ok(scalar(@headings), '>', 20, 'docs/sql-reference.md has function headings');

my $node = PostgreSQL::Test::Cluster->new('docs');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.workers = 0
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orchestrator');

# Split a list at top-level commas (not inside parentheses, brackets or quotes).
sub split_top
{
	my ($s) = @_;
	my @parts;
	my ($cur, $depth, $quote) = ('', 0, 0);
	for my $c (split //, $s)
	{
		if ($quote) { $quote = 0 if $c eq "'"; }
		elsif ($c eq "'") { $quote = 1; }
		elsif ($c eq '(' || $c eq '[') { $depth++; }
		elsif ($c eq ')' || $c eq ']') { $depth--; }
		elsif ($c eq ',' && $depth == 0) { push @parts, $cur; $cur = ''; next; }
		$cur .= $c;
	}
	push @parts, $cur if $cur =~ /\S/;
	s/^\s+|\s+$//g for @parts;
	return @parts;
}

# Type names as PostgreSQL formats them, asked of the server once each.
my %type_cache;
sub norm_type
{
	my ($t) = @_;
	$t =~ s/^\s+|\s+$//g;
	return $type_cache{$t} //= do {
		my $q = $t;
		$q =~ s/'/''/g;
		# to_regtype() raises an error for what cannot be a type name at all
		my ($rc, $r) = $node->psql('postgres', "SELECT format_type(to_regtype('$q'), NULL)");
		($rc != 0 || $r eq '') ? "?$t" : $r;
	};
}

# "[mode] name type [DEFAULT expr]" -> "mode name type[ = expr]", the default
# without a cast to the argument's type.
sub norm_arg
{
	my ($a) = @_;
	my $default;
	if ($a =~ /^(.*?)\s+DEFAULT\s+(.*)$/is) { ($a, $default) = ($1, $2); }
	my $mode = 'IN';
	$mode = uc $1 if $a =~ s/^(IN|OUT|INOUT|VARIADIC)\s+//i;
	my ($name, $type) = $a =~ /^("[^"]+"|[a-z_][a-z0-9_]*)\s+(.+)$/is
	  or return "?$a";
	$type = norm_type($type);
	my $out = "$mode $name $type";
	if (defined $default)
	{
		$default =~ s/^\s+|\s+$//g;
		$default =~ s/::\Q$type\E$//;
		$out .= " = $default";
	}
	return $out;
}

sub norm_result
{
	my ($r) = @_;
	$r =~ s/^\s+|\s+$//g;
	if ($r =~ /^table\s*\((.*)\)$/is)
	{
		return 'TABLE(' . join(', ', map { my ($n, $t) = /^(\S+)\s+(.+)$/s; "$n " . norm_type($t) }
			  split_top($1)) . ')';
	}
	return 'SETOF ' . norm_type($1) if $r =~ /^setof\s+(.+)$/is;
	return norm_type($r);
}

sub norm_signature
{
	my ($args, $result) = @_;
	return '(' . join(', ', map { norm_arg($_) } split_top($args)) . ') -> ' . norm_result($result);
}

# --- the catalog ---------------------------------------------------------
my $catalog = $node->safe_psql('postgres', q{
	SELECT p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
		   p.proname NOT LIKE '\_%' AND EXISTS (
			SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
			WHERE a.privilege_type = 'EXECUTE'
			  AND (a.grantee = 0 OR a.grantee IN (SELECT r.oid FROM pg_roles r WHERE r.rolname IN
					('orchestrator_user', 'orchestrator_admin', 'orchestrator_http')))),
		   (SELECT string_agg(DISTINCT r.rolname, ' ')
			FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
			JOIN pg_roles r ON r.oid = a.grantee
			WHERE a.privilege_type = 'EXECUTE'
			  AND r.rolname IN ('orchestrator_user', 'orchestrator_admin', 'orchestrator_http'))
	FROM pg_proc p
	WHERE p.pronamespace = 'orchestrator'::regnamespace
	ORDER BY 1, 2});
my (%by_name, @public);
for my $row (split /\n/, $catalog)
{
	my ($name, $args, $result, $public, $grantees) = split /\|/, $row, 5;
	my $f = {
		name => $name,
		grantees => [ split / /, $grantees // '' ],
		text => "$name($args) returns $result",
		sig => norm_signature($args, $result),
		public => $public eq 't',
	};
	# The heading to paste: PostgreSQL's own text, defaults without their cast.
	my @a = map { my $x = $_; $x =~ s/ DEFAULT (.*)::[^':]+$/ DEFAULT $1/; $x } split_top($args);
	$f->{heading} = "### `$name(" . join(', ', @a) . ") returns $result`";
	push @{ $by_name{$name} }, $f;
	push @public, $f if $f->{public};
}

# Every heading names an existing public function with that signature.
my %documented;
for my $h (@headings)
{
	my ($line, $text, $name, $args, $result) = @$h;
	my $sig = norm_signature($args, $result);
	my @same = @{ $by_name{$name} // [] };
	my ($match) = grep { $_->{sig} eq $sig } @same;
	if ($match)
	{
		ok($match->{public}, "sql-reference.md:$line: $name is public")
		  or diag("heading `$text` documents $name, which no orchestrator role may execute: "
			  . 'grant it, or remove the heading');
		$documented{ $match->{text} } = 1;
	}
	elsif (@same)
	{
		fail("sql-reference.md:$line: heading of $name matches the catalog");
		diag("heading:  $text\n  normalised: $sig\n"
			  . join('', map { "catalog:  $_->{text}\n  normalised: $_->{sig}\n  heading to use: $_->{heading}\n" } @same));
	}
	else
	{
		fail("sql-reference.md:$line: heading names an existing function");
		diag("heading `$text`: schema orchestrator has no function $name (renamed or removed? drop or fix the heading)");
	}
}

# Every public function has a heading.
for my $f (@public)
{
	ok($documented{ $f->{text} }, "$f->{name} is documented in sql-reference.md")
	  or diag("public function orchestrator.$f->{text} has no heading in docs/sql-reference.md; add:\n$f->{heading}");
}

# The table "Roles and grants" lists each function (public or one of the
# "_" helpers the views need) in the row of every role it is granted to.
my ($roles_section) = $reference_text =~ /^## Roles and grants\n(.*?)(?=^## )/ms;
ok(defined $roles_section, 'sql-reference.md has a section "Roles and grants"');
my %role_row;
$role_row{$1} = $2 while ($roles_section // '') =~ /^\| `([a-z_]+)` \|(.*)$/mg;
for my $f (map { @$_ } values %by_name)
{
	for my $role (@{ $f->{grantees} })
	{
		ok(defined $role_row{$role} && $role_row{$role} =~ /`\Q$f->{name}\E`/,
			"the roles table lists $f->{name} for $role")
		  or diag("sql-reference.md, \"Roles and grants\": "
			  . (defined $role_row{$role} ? "the row of `$role` does not name `$f->{name}`"
				  : "no row | `$role` | ... for $f->{name}"));
	}
}

# Every setting is in the reference's GUC table and in the README's.
my $readme_text = do { local (@ARGV, $/) = ("$root/README.md"); <> };
for my $guc (split /\n/, $node->safe_psql('postgres',
		"SELECT name FROM pg_settings WHERE name LIKE 'orchestrator.%' ORDER BY 1"))
{
	ok($reference_text =~ /^\| `\Q$guc\E` \|/m, "sql-reference.md documents setting $guc")
	  or diag("setting $guc has no row | `$guc` | ... in the GUCs table of docs/sql-reference.md");
	ok($readme_text =~ /^\| `\Q$guc\E` \|/m, "README.md lists setting $guc")
	  or diag("setting $guc has no row | `$guc` | ... in the Settings table of README.md");
}

$node->stop;
done_testing();
